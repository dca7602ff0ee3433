import json
import time

import pytest
from django.test import Client

from conftest import broker_unreachable
from core.signatures import sign


@pytest.fixture
def webhook():
    """``webhook(merchant, body, secret=None, timestamp=None, signatures=None)`` → the response."""

    def send(merchant, body, *, secret=None, timestamp=None, signatures=None, raw=None):
        payload = raw if raw is not None else json.dumps(body).encode()
        t = int(time.time()) if timestamp is None else timestamp
        sigs = signatures or [sign(secret or merchant.webhook_secret, t, payload)]
        header = f"t={t}," + ",".join(f"v1={s}" for s in sigs)
        return Client().post(
            "/webhook/refund-status/",
            data=payload,
            content_type="application/json",
            HTTP_BNPL_MERCHANT=merchant.user_id,
            HTTP_BNPL_SIGNATURE=header,
        )

    return send


@pytest.fixture
def no_broker():
    """Point the publisher at a port where nothing listens: the broker is down."""
    with broker_unreachable():
        yield
