import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.masking import find_unmasked_pii, mask_card, mask_passport, mask_phone, mask_text


@pytest.mark.parametrize(
    ("raw", "masked"),
    [("+998901234567", "+998****4567"), ("+12025550123", "+120****0123"), ("", ""), (None, "")],
)
def test_mask_phone(raw, masked):
    assert mask_phone(raw) == masked


@pytest.mark.parametrize(("raw", "masked"), [("AA1234567", "AA*******"), ("X1", "X1"), ("", "")])
def test_mask_passport(raw, masked):
    assert mask_passport(raw) == masked


def test_mask_card():
    assert mask_card("411111", "1111") == "4111 **** **** 1111"
    assert mask_card("", "") == ""


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_masked_phone_never_holds_the_number(phone):
    masked = mask_phone(phone)
    assert masked.startswith("+" + phone[1:4])
    assert masked.endswith(phone[-4:])
    assert "****" in masked
    assert phone not in masked
    assert not find_unmasked_pii(masked)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111111111111111 declined", "card 4111 **** **** 1111 declined"),
        ("card 4111 1111 1111 1111.", "card 4111 **** **** 1111."),
        ("card 4111-1111-1111-1111", "card 4111 **** **** 1111"),
        ("amex 378282246310005 ok", "amex 3782 **** **** 0005 ok"),
        ("call +998901234567 now", "call +998****4567 now"),
        ("passport AA1234567 given", "passport AA******* given"),
        ('{"phone_number": "+998901234567"}', '{"phone_number": "+998****4567"}'),
        ("order 12345 at 2026-11-22T10:00:00+00:00", "order 12345 at 2026-11-22T10:00:00+00:00"),
    ],
)
def test_mask_text_masks_pii_in_free_text(text, expected):
    assert mask_text(text) == expected
    assert not find_unmasked_pii(mask_text(text))


def test_logging_filter_masks_every_logger_args_extras_and_tracebacks(log_lines):
    logging.getLogger("some.library").warning("charging %s for %s", "4111111111111111", "+998901234567")
    logging.getLogger("celery.worker").info(
        "kyc", extra={"passport": "AA1234567", "payload": {"pan": "4111111111111111"}}
    )
    try:
        raise ValueError("bad passport AB7654321")
    except ValueError:
        logging.getLogger("django.request").exception("failed for +998907654321")

    text = "\n".join(log_lines())
    assert "4111 **** **** 1111" in text
    assert "+998****4567" in text
    assert "AA*******" in text
    assert "AB*******" in text
    assert "+998****4321" in text
    for secret in ("4111111111111111", "+998901234567", "AA1234567", "AB7654321", "+998907654321"):
        assert secret not in text
