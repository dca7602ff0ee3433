"""Merchant pricing: the fee rule (accounts.pricing), the operators' edits in the admin (each
change recorded, in the save's transaction) and the merchant's read-only view on /auth/me/."""

from decimal import Decimal as D

import pytest
from django.db import IntegrityError, transaction

from accounts.models import MerchantPricingChange, User
from accounts.pricing import MerchantPricing, merchant_fee, merchant_fee_refunded, merchant_pricings
from accounts.tests.factories import MerchantFactory, UserFactory

ME = "/api/v1/auth/me/"
DEFAULT = MerchantPricing(fee_percent=D("4.00"), fee_fixed=D("0.30"))


@pytest.mark.parametrize(
    ("total", "pricing", "fee"),
    [
        (D("0.01"), DEFAULT, D("0.01")),  # 0.00 + 0.30 is above the total: the total, never more
        (D("0.30"), DEFAULT, D("0.30")),  # 0.012 rounds to 0.01, + 0.30 = 0.31 > 0.30
        (D("1.00"), DEFAULT, D("0.34")),  # 0.04 + 0.30
        (D("500.01"), DEFAULT, D("20.30")),  # 20.0004 rounds to 20.00, + 0.30
        (D("12.50"), DEFAULT, D("0.80")),  # 0.50 + 0.30
        (D("0.13"), MerchantPricing(D("50"), D("0")), D("0.07")),  # 0.065: half up, not to even
        (D("0.11"), MerchantPricing(D("50"), D("0")), D("0.06")),  # 0.055: half up
        (D("100000.00"), MerchantPricing(D("100"), D("0")), D("100000.00")),
        (D("100000.00"), MerchantPricing(D("0"), D("0")), D("0.00")),  # a 0 % + 0 merchant pays nothing
        (D("999.99"), MerchantPricing(D("2.99"), D("0.49")), D("30.39")),  # 29.899701 -> 29.90, + 0.49
    ],
)
def test_merchant_fee_is_rounded_half_up_plus_the_fixed_part_never_above_the_total(total, pricing, fee):
    assert merchant_fee(total=total, pricing=pricing) == fee
    assert merchant_fee(total=total, pricing=pricing).as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("fee", "returned", "total", "amount", "refunded", "back"),
    [
        (D("20.30"), D("0"), D("500.00"), D("100.00"), D("100.00"), D("4.06")),  # a fifth
        (D("0.34"), D("0"), D("1.00"), D("0.50"), D("0.50"), D("0.17")),
        (D("0.31"), D("0"), D("3.00"), D("1.00"), D("1.00"), D("0.10")),  # 0.10333: 0.10
        (D("0.31"), D("0.20"), D("3.00"), D("1.00"), D("2.00"), D("0.10")),
        (D("0.31"), D("0.20"), D("3.00"), D("1.00"), D("3.00"), D("0.11")),  # the last refund takes the rest
        (D("0.05"), D("0.04"), D("10.00"), D("5.00"), D("9.00"), D("0.01")),  # never above what is left
        (D("0.05"), D("0.05"), D("10.00"), D("1.00"), D("10.00"), D("0.00")),  # all returned already
        (D("0.00"), D("0"), D("10.00"), D("10.00"), D("10.00"), D("0.00")),
    ],
)
def test_a_refund_returns_its_share_of_the_fee_never_more_than_is_left(fee, returned, total, amount, refunded, back):
    got = merchant_fee_refunded(fee=fee, returned=returned, total=total, amount=amount, refunded=refunded)
    assert got == back


@pytest.mark.django_db
def test_merchant_pricings_reads_each_merchant_s_price_with_the_defaults_for_what_is_empty(settings):
    settings.BNPL_MERCHANT_FEE_PERCENT, settings.BNPL_MERCHANT_FEE_FIXED = D("3.50"), D("0.25")
    own = MerchantFactory(fee_percent=D("1.25"), fee_fixed=D("0.00"))
    half = MerchantFactory(fee_fixed=D("1.00"))
    plain = MerchantFactory()

    prices = merchant_pricings([own.pk, half.pk, plain.pk])

    assert prices == {
        own.pk: MerchantPricing(D("1.25"), D("0.00")),
        half.pk: MerchantPricing(D("3.50"), D("1.00")),
        plain.pk: MerchantPricing(D("3.50"), D("0.25")),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"), [("fee_percent", D("100.01")), ("fee_percent", D("-0.01")), ("fee_fixed", D("-0.01"))]
)
def test_the_database_refuses_a_price_out_of_bounds(field, value):
    merchant = MerchantFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=merchant.pk).update(**{field: value})


# --- The admin -------------------------------------------------------------------------------


def _change_form(merchant: User, **changes) -> dict:
    """The admin change form of ``merchant`` as posted back, with ``changes``."""
    form = {
        "username": merchant.username,
        "email": merchant.email,
        "full_name": merchant.full_name,
        "role": merchant.role,
        "credit_limit": str(merchant.credit_limit),
        "autopay": "on",
        "is_active": "on",
        "webhook_url": merchant.webhook_url,
        "fee_percent": "" if merchant.fee_percent is None else str(merchant.fee_percent),
        "fee_fixed": "" if merchant.fee_fixed is None else str(merchant.fee_fixed),
        "pricing_changes-TOTAL_FORMS": "0",
        "pricing_changes-INITIAL_FORMS": "0",
        "pricing_changes-MIN_NUM_FORMS": "0",
        "pricing_changes-MAX_NUM_FORMS": "0",
    }
    return form | changes


@pytest.mark.django_db
def test_an_operator_s_pricing_change_is_recorded_with_who_when_before_and_after(operator_client, operator):
    merchant = MerchantFactory()
    url = f"/admin/accounts/user/{merchant.pk}/change/"

    response = operator_client.post(url, _change_form(merchant, fee_percent="2.50", fee_fixed="0.10"))

    assert response.status_code == 302, response.content.decode()[:3000]
    merchant.refresh_from_db()
    assert (merchant.fee_percent, merchant.fee_fixed) == (D("2.50"), D("0.10"))
    change = MerchantPricingChange.objects.get()
    assert (change.merchant, change.changed_by) == (merchant, operator)
    assert (change.fee_percent_before, change.fee_percent_after) == (None, D("2.50"))
    assert (change.fee_fixed_before, change.fee_fixed_after) == (None, D("0.10"))
    assert change.changed_at is not None

    # Saved again with the same price (another field changed): nothing recorded.
    response = operator_client.post(url, _change_form(merchant, full_name="Renamed Shop"))
    assert response.status_code == 302
    assert MerchantPricingChange.objects.count() == 1

    # Back to the default: recorded, the values before kept.
    response = operator_client.post(url, _change_form(merchant, fee_percent="", fee_fixed="0.10"))
    assert response.status_code == 302
    latest = MerchantPricingChange.objects.order_by("-id").first()
    assert (latest.fee_percent_before, latest.fee_percent_after) == (D("2.50"), None)
    assert (latest.fee_fixed_before, latest.fee_fixed_after) == (D("0.10"), D("0.10"))

    # The history is on the merchant's page, and in its own list, read-only.
    page = operator_client.get(url).content.decode()
    assert "Pricing changes" in page
    assert "2.50" in page
    assert "pricing_changes-0-fee_percent_after" not in page  # shown, not an input
    listing = operator_client.get("/admin/accounts/merchantpricingchange/")
    assert listing.status_code == 200
    assert merchant.user_id in listing.content.decode()
    assert operator_client.get("/admin/accounts/merchantpricingchange/add/").status_code == 403
    assert operator_client.post(f"/admin/accounts/merchantpricingchange/{change.pk}/delete/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fee_percent": "100.01"}, "fee_percent"),
        ({"fee_percent": "-1"}, "fee_percent"),
        ({"fee_fixed": "-0.01"}, "fee_fixed"),
        ({"fee_fixed": "0.001"}, "fee_fixed"),
    ],
)
def test_the_admin_refuses_a_price_out_of_bounds_and_records_nothing(operator_client, changes, field):
    merchant = MerchantFactory()

    response = operator_client.post(f"/admin/accounts/user/{merchant.pk}/change/", _change_form(merchant, **changes))

    assert response.status_code == 200  # the form again, with the error
    assert field in response.context["adminform"].form.errors
    merchant.refresh_from_db()
    assert (merchant.fee_percent, merchant.fee_fixed) == (None, None)
    assert not MerchantPricingChange.objects.exists()


@pytest.mark.django_db
def test_only_merchants_have_a_price(operator_client):
    customer = UserFactory()

    response = operator_client.post(
        f"/admin/accounts/user/{customer.pk}/change/", _change_form(customer, fee_percent="1.00")
    )

    assert response.status_code == 200
    assert "fee_percent" in response.context["adminform"].form.errors
    assert not MerchantPricingChange.objects.exists()
    assert "Pricing changes" not in response.content.decode()


@pytest.mark.django_db
def test_a_pricing_change_is_undone_with_the_save_that_failed(operator, monkeypatch):
    """The change row is written in the save's transaction: a save that fails records nothing."""
    from accounts import services

    merchant = MerchantFactory()
    merchant.fee_percent = D("1.00")

    def fail(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services.MerchantPricingChange.objects, "create", fail)
    with pytest.raises(RuntimeError):
        services.user_save_by_operator(user=merchant, operator=operator)

    merchant.refresh_from_db()
    assert merchant.fee_percent is None
    assert not MerchantPricingChange.objects.exists()


# --- /auth/me/ --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_merchant_sees_its_effective_pricing_and_others_see_null(as_user, settings):
    settings.BNPL_MERCHANT_FEE_PERCENT, settings.BNPL_MERCHANT_FEE_FIXED = D("4.00"), D("0.30")
    own = MerchantFactory(fee_percent=D("2.5"), fee_fixed=D("0"))
    plain = MerchantFactory()

    assert {k: as_user(own).get(ME).json()[k] for k in ("fee_percent", "fee_fixed")} == {
        "fee_percent": "2.50",
        "fee_fixed": "0.00",
    }
    assert {k: as_user(plain).get(ME).json()[k] for k in ("fee_percent", "fee_fixed")} == {
        "fee_percent": "4.00",
        "fee_fixed": "0.30",
    }
    customer = as_user(UserFactory()).get(ME).json()
    assert (customer["fee_percent"], customer["fee_fixed"]) == (None, None)


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["fee_percent", "fee_fixed"])
@pytest.mark.parametrize("with_other_field", [False, True])
def test_a_merchant_cannot_change_its_own_pricing(as_user, field, with_other_field):
    merchant = MerchantFactory()
    body = {field: "0.00"} | ({"webhook_url": "https://shop.example.com/hooks"} if with_other_field else {})

    response = as_user(merchant).patch(ME, body, format="json")

    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in response.json()["errors"]
    merchant.refresh_from_db()
    assert (merchant.fee_percent, merchant.fee_fixed, merchant.webhook_url) == (None, None, "")
