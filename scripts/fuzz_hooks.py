"""Schemathesis hooks for scripts/fuzz_api.py (loaded through ``SCHEMATHESIS_HOOKS``).

With ``FUZZ_SIGN_WEBHOOK=1`` every call to ``POST /webhook/refund-status/`` is signed as the
demo merchant: ``BNPL-Merchant: merchant-001`` and a ``BNPL-Signature`` over the exact bytes
sent, with the demo webhook secret. The fuzzer then gets past the signature check to what
stands behind it (the body's validation, the refund lookup). Without it the generated
headers go out as they are, and the answers are the documented 401s.
"""

import json
import os
import time

import schemathesis
from schemathesis.core import NotSet

from core.signatures import signature_header

WEBHOOK_PATH = "/webhook/refund-status/"
DEMO_MERCHANT = "merchant-001"
DEMO_WEBHOOK_SECRET = "whsec_demo_merchant_001"  # noqa: S105 - populate_mock_data's local-only secret  # nosec B105


def raw_body(body) -> bytes | None:
    """The bytes schemathesis would send for a generated body; None for one it could not send as JSON."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    if body is None:
        return b"null"  # schemathesis sends a None body as the JSON literal
    try:
        # What requests does with ``json=``: json.dumps with its default separators, NaN refused.
        return json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def before_call(context, case, kwargs):
    """Sign the webhook's body (see the module's docstring); leave every other call alone."""
    if os.environ.get("FUZZ_SIGN_WEBHOOK") != "1" or case.operation.path != WEBHOOK_PATH:
        return
    body = raw_body(case.body)
    if body is None:
        return
    kwargs["data"] = body  # send exactly the bytes that were signed
    headers = dict(case.headers or {})
    headers["BNPL-Merchant"] = DEMO_MERCHANT
    headers["BNPL-Signature"] = signature_header(DEMO_WEBHOOK_SECRET, int(time.time()), body)
    case.headers = headers
