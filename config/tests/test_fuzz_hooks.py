"""The schema fuzzer's hook (scripts/fuzz_hooks.py) signs exactly the bytes it sends."""

import json
import time
from types import SimpleNamespace

import pytest
from schemathesis.core import NOT_SET

from core.signatures import signature_problem
from scripts.fuzz_hooks import DEMO_MERCHANT, DEMO_WEBHOOK_SECRET, WEBHOOK_PATH, before_call


def call(path: str, body, headers=None) -> tuple[SimpleNamespace, dict]:
    case = SimpleNamespace(operation=SimpleNamespace(path=path), body=body, headers=headers)
    kwargs: dict = {}
    before_call(None, case, kwargs)
    return case, kwargs


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        ({"refund_id": "rf-\u00e9", "status": "approved"}, b'{"refund_id": "rf-\\u00e9", "status": "approved"}'),
        ([1, None], b"[1, null]"),
        (None, b"null"),
        (NOT_SET, b""),
        (b"\x00raw", b"\x00raw"),
    ],
)
def test_the_webhook_is_signed_over_the_bytes_sent(monkeypatch, body, sent):
    monkeypatch.setenv("FUZZ_SIGN_WEBHOOK", "1")

    case, kwargs = call(WEBHOOK_PATH, body, headers={"BNPL-Signature": "generated", "X-Other": "kept"})

    assert kwargs["data"] == sent
    assert case.headers["BNPL-Merchant"] == DEMO_MERCHANT
    assert case.headers["X-Other"] == "kept"
    assert signature_problem(DEMO_WEBHOOK_SECRET, case.headers["BNPL-Signature"], sent, time.time()) is None
    if isinstance(body, dict):
        assert json.loads(kwargs["data"]) == body


def test_nothing_is_signed_unless_asked_or_elsewhere(monkeypatch):
    monkeypatch.setenv("FUZZ_SIGN_WEBHOOK", "0")
    case, kwargs = call(WEBHOOK_PATH, {"a": 1})
    assert (case.headers, kwargs) == (None, {})
    monkeypatch.setenv("FUZZ_SIGN_WEBHOOK", "1")
    case, kwargs = call("/api/v1/plans/", {"a": 1})
    assert (case.headers, kwargs) == (None, {})


def test_a_body_json_cannot_carry_is_left_unsigned(monkeypatch):
    monkeypatch.setenv("FUZZ_SIGN_WEBHOOK", "1")
    case, kwargs = call(WEBHOOK_PATH, {"amount": float("nan")})
    assert (case.headers, kwargs) == (None, {})
