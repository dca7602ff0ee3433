"""The webhook's reads written out for PostgreSQL find what the ORM finds (SQLite keeps the
ORM): the merchant with its webhook secret, and a merchant's refund by transaction id."""

import pytest
from django.db import connection

from accounts.models import User
from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory
from refunds.selectors import merchant_refund, webhook_merchant
from refunds.tests.factories import refund_requested

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the statements are PostgreSQL's"),
]


def _merchant(user: User | None):
    return None if user is None else (user.pk, user.user_id, user.role, user.webhook_secret)


def _refund(refund):
    if refund is None:
        return None
    return (refund.pk, refund.transaction_id, refund.status, refund.merchant_reference, refund.amount, refund.plan_id)


def test_the_webhook_s_merchant_is_the_merchant_the_orm_finds(monkeypatch):
    merchant = MerchantFactory(webhook_secret="whsec_one")
    no_secret = MerchantFactory(webhook_secret="")
    inactive = MerchantFactory(webhook_secret="whsec_gone", is_active=False)
    ids = [
        merchant.user_id,
        no_secret.user_id,
        inactive.user_id,
        UserFactory().user_id,
        OperatorFactory().user_id,
        "usr-nobody",
        "9" * 30,
    ]

    written = [_merchant(webhook_merchant(user_id=user_id)) for user_id in ids]
    monkeypatch.setattr("refunds.selectors.postgresql", lambda: False)
    orm = [_merchant(webhook_merchant(user_id=user_id)) for user_id in ids]

    assert written == orm
    assert written[:2] == [
        (merchant.pk, merchant.user_id, User.Role.MERCHANT, "whsec_one"),
        (no_secret.pk, no_secret.user_id, User.Role.MERCHANT, ""),
    ]
    assert written[2:] == [None] * 5


def test_a_merchant_s_refund_is_the_refund_the_orm_finds(make_plan, monkeypatch):
    plan = make_plan(total="100.00")
    other = make_plan(total="100.00")
    refund = refund_requested(plan, "10.00", transaction_id="rf-mine")
    refund_requested(other, "10.00", transaction_id="rf-theirs")
    asks = [
        (plan.merchant_id, "rf-mine"),
        (plan.merchant_id, "rf-theirs"),
        (other.merchant_id, "rf-mine"),
        (plan.merchant_id, "rf-nobody"),
        (2**63 + 1, "rf-mine"),
    ]

    written = [_refund(merchant_refund(merchant_id=m, transaction_id=t)) for m, t in asks]
    monkeypatch.setattr("refunds.selectors.postgresql", lambda: False)
    orm = [_refund(merchant_refund(merchant_id=m, transaction_id=t)) for m, t in asks]

    assert written == orm
    assert written[0][0] == refund.pk
    assert written[1:] == [None] * 4
