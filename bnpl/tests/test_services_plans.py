from datetime import date
from decimal import Decimal

import pytest

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.errors import CreditDeclined, DebtUserForbidden
from bnpl.models import Installment, Plan
from bnpl.selectors import credit_position
from bnpl.services.origination import plan_create, plans_originate_many
from core.problems import FieldInvalid
from ledger.accounts import CUSTOMER_RECEIVABLE, MERCHANT_FEE_INCOME, MERCHANT_PAYABLE
from ledger.checks import ledger_check
from ledger.models import JournalEntry, Posting

pytestmark = pytest.mark.django_db


def test_plan_create_splits_dates_and_posts_origination(make_plan):
    plan = make_plan(total="500.00", count=3, purchase_date=date(2026, 1, 31))

    installments = list(plan.installments.order_by("sequence"))
    assert [i.amount_due for i in installments] == [Decimal("166.67"), Decimal("166.67"), Decimal("166.66")]
    assert [i.due_date for i in installments] == [date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    assert {i.status for i in installments} == {Installment.Status.UPCOMING}
    assert {i.customer_id for i in installments} == {plan.customer_id}
    entry = JournalEntry.objects.get(plan=plan)
    assert entry.kind == JournalEntry.Kind.ORIGINATION
    legs = [(p.account.code, p.amount, p.party_id) for p in entry.postings.select_related("account").order_by("id")]
    assert legs == [
        (CUSTOMER_RECEIVABLE, Decimal("500.00"), plan.customer_id),
        (MERCHANT_PAYABLE, Decimal("-500.00"), plan.merchant_id),
        # The merchant's fee at the default price: 500.00 * 4 / 100 + 0.30.
        (MERCHANT_PAYABLE, Decimal("20.30"), plan.merchant_id),
        (MERCHANT_FEE_INCOME, Decimal("-20.30"), plan.merchant_id),
    ]
    assert plan.merchant_fee == Plan.objects.get(pk=plan.pk).merchant_fee == Decimal("20.30")


def test_plan_create_refuses_debt_user(make_plan):
    debtor = UserFactory(status=User.Status.DEBT_USER)

    with pytest.raises(DebtUserForbidden) as refused:
        make_plan(customer=debtor)

    assert refused.value.detail == "Users with DEBT_USER status cannot create new BNPL plans"
    assert refused.value.status_code == 403
    assert not Plan.objects.exists()


def test_plan_create_counts_existing_debt_against_the_credit_limit(make_plan):
    customer = UserFactory(credit_limit=Decimal("1000.00"))
    make_plan(customer=customer, total="600.00")

    with pytest.raises(CreditDeclined) as refused:
        make_plan(customer=customer, total="400.01")

    assert refused.value.extra == {}  # whoever creates the plan learns nothing of the customer's money
    make_plan(customer=customer, total="400.00")  # exactly up to the limit is fine
    assert credit_position(customer=customer, currency="USD").outstanding == Decimal("1000.00")
    assert Posting.objects.count() == 2 * 4  # each plan: receivable, payable, and the fee's two legs


def test_plan_create_refuses_a_total_smaller_than_a_cent_per_installment(make_plan):
    with pytest.raises(FieldInvalid) as refused:
        make_plan(total="0.03", count=4)
    assert "total_amount" in refused.value.extra["errors"]


def test_plan_create_defaults_currency_and_purchase_date(settings):
    settings.BNPL_DEFAULT_CURRENCY = "EUR"
    plan = plan_create(customer=UserFactory(), merchant=MerchantFactory(), total_amount=Decimal("100.00"))

    assert plan.currency == "EUR"
    assert plan.installment_count == 4
    assert plan.frequency == Plan.Frequency.MONTHLY
    assert plan.purchase_date is not None


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["back office", "confirmed"])
@pytest.mark.parametrize("webhook_url", ["", "https://merchant.example/hooks"])
@pytest.mark.parametrize(
    ("pricing", "fee"),
    [
        ((None, None), Decimal("20.30")),  # the default 4 % + 0.30 of 500.01
        ((Decimal("2.75"), Decimal("1.10")), Decimal("14.85")),  # 13.750275 rounds to 13.75
        ((Decimal("0"), Decimal("0")), Decimal("0.00")),  # no fee: no fee legs
    ],
)
def test_origination_in_one_statement_writes_what_the_orm_path_writes(monkeypatch, webhook_url, how, pricing, fee):
    """On PostgreSQL a plan is originated by one statement of its own SQL (inserting the plan
    in the back office, updating the offer its customer confirms); elsewhere through the ORM.
    Both leave the same rows: plan (its merchant fee too), installments, entry, postings
    (the fee's legs too) and event."""
    from bnpl.services import origination as services
    from bnpl.services.checkout import Offer, plan_confirm, plan_offer
    from events.models import Event

    customer = UserFactory()
    merchant = MerchantFactory(webhook_url=webhook_url, fee_percent=pricing[0], fee_fixed=pricing[1])
    dispatched: list[int] = []
    monkeypatch.setattr(services, "event_dispatch_after_commit", dispatched.append)
    terms = {
        "total_amount": Decimal("500.01"),
        "installment_count": 3,
        "frequency": Plan.Frequency.BIWEEKLY,
        "currency": "EUR",
    }
    event_type = Event.Type.PLAN_CREATED if how == "back office" else Event.Type.PLAN_CONFIRMED

    def originate(reference: str) -> Plan:
        if how == "back office":
            return plan_create(
                customer=customer,
                merchant=merchant,
                merchant_reference=reference,
                purchase_date=date(2026, 1, 31),
                **terms,
            )
        offer, _ = plan_offer(customer=customer, merchant=merchant, offer=Offer(merchant_reference=reference, **terms))
        return plan_confirm(plan_id=offer.pk, customer=customer)

    written = {"pg": originate("order-'7\"pg")}
    monkeypatch.setattr(services, "_originate_pg", services._originate_orm)
    written["orm"] = originate("order-'7\"orm")

    def rows(plan: Plan) -> dict:
        stored = Plan.objects.get(pk=plan.pk)
        entry = JournalEntry.objects.get(plan=plan)
        event = Event.objects.get(type=event_type, data__plan_id=plan.pk)
        return {
            "plan": {
                f: getattr(stored, f)
                for f in (
                    "customer_id",
                    "merchant_id",
                    "total_amount",
                    "currency",
                    "installment_count",
                    "frequency",
                    "status",
                    "merchant_reference",
                    "purchase_date",
                    "capture_mode",
                    "authorized_amount",
                    "checkout_token",
                    "expires_at",
                    "created_by_id",
                    "merchant_fee",
                )
            },
            "installments": list(
                plan.installments.order_by("sequence").values_list(
                    "customer_id",
                    "sequence",
                    "amount_due",
                    "amount_paid",
                    "due_date",
                    "status",
                    "paid_at",
                    "overdue_since",
                )
            ),
            "entry": (entry.kind, entry.memo.replace(str(plan.pk), "#")),
            "postings": list(
                entry.postings.order_by("id").values_list("account__code", "amount", "currency", "plan_id", "party_id")
            ),
            "event": (
                event.merchant_id,
                event.delivery_status,
                event.attempts,
                event.give_up_at - event.created_at,
                {**event.data, "plan_id": "#", "merchant_reference": event.data["merchant_reference"][:9]},
                len(event.public_id),
            ),
            "returned": [(i.pk, i.sequence, i.amount_due, i.due_date) for i in plan.installments.all()],
            "stored": [(i.pk, i.sequence, i.amount_due, i.due_date) for i in stored.installments.order_by("sequence")],
        }

    pg, orm = rows(written["pg"]), rows(written["orm"])
    stored = Plan.objects.get(pk=written["pg"].pk)
    assert stored.merchant_reference == "order-'7\"pg"
    assert stored.updated_at == stored.activated_at == written["pg"].updated_at
    if how == "back office":
        assert stored.created_at == stored.updated_at == written["pg"].created_at
    for found in (pg, orm):
        found["plan"]["merchant_reference"] = found["plan"]["merchant_reference"][:9]
    assert pg["postings"][0][3] == written["pg"].pk
    for found in (pg, orm):
        assert found.pop("returned") == found.pop("stored")
        for posting in found["postings"]:
            assert posting[3] in (written["pg"].pk, written["orm"].pk)
        found["postings"] = [p[:3] + p[4:] for p in found["postings"]]
    assert pg == orm
    assert pg["plan"]["merchant_fee"] == written["pg"].merchant_fee == fee
    fee_legs = [("merchant_payable", fee, "EUR", merchant.pk), ("merchant_fee_income", -fee, "EUR", merchant.pk)]
    assert pg["postings"][2:] == (fee_legs if fee else [])
    # Delivery is queued for the PENDING event only (the ORM path queues its own in event_record).
    assert len(dispatched) == (1 if webhook_url else 0)


@pytest.mark.parametrize(
    ("total", "pricing", "fee"),
    [
        ("0.02", (None, None), Decimal("0.02")),  # the smallest plan: the fee is its total, never more
        ("1.00", (None, None), Decimal("0.34")),
        ("500.01", (None, None), Decimal("20.30")),
        ("500.01", (Decimal("0"), Decimal("0")), Decimal("0.00")),
    ],
)
def test_plan_create_charges_the_merchant_fee_in_the_origination_entry(total, pricing, fee):
    merchant = MerchantFactory(fee_percent=pricing[0], fee_fixed=pricing[1])

    plan = plan_create(customer=UserFactory(), merchant=merchant, total_amount=Decimal(total), installment_count=2)

    assert plan.merchant_fee == Plan.objects.get(pk=plan.pk).merchant_fee == fee
    entry = JournalEntry.objects.get(plan=plan)
    legs = list(entry.postings.order_by("id").values_list("account__code", "amount", "plan_id", "party_id"))
    expected = [
        (CUSTOMER_RECEIVABLE, Decimal(total), plan.pk, plan.customer_id),
        (MERCHANT_PAYABLE, -Decimal(total), plan.pk, merchant.pk),
    ]
    if fee:
        expected += [(MERCHANT_PAYABLE, fee, plan.pk, merchant.pk), (MERCHANT_FEE_INCOME, -fee, plan.pk, merchant.pk)]
    assert legs == expected
    assert sum(amount for _, amount, _, _ in legs) == 0


def test_the_fee_is_charged_at_the_price_committed_when_the_plan_becomes_active(settings):
    """Not at the price of the merchant row the caller holds (a request's user may be a few
    seconds old), and a plan already active keeps the fee it was charged."""
    merchant = MerchantFactory()
    first = plan_create(customer=UserFactory(), merchant=merchant, total_amount=Decimal("100.00"))
    User.objects.filter(pk=merchant.pk).update(fee_percent=Decimal("1.00"), fee_fixed=Decimal("0.00"))

    second = plan_create(customer=UserFactory(), merchant=merchant, total_amount=Decimal("100.00"))
    settings.BNPL_MERCHANT_FEE_PERCENT = Decimal("9.00")

    assert merchant.fee_percent is None  # the instance passed in still says "the default"
    assert (first.merchant_fee, second.merchant_fee) == (Decimal("4.30"), Decimal("1.00"))
    first.refresh_from_db()
    assert first.merchant_fee == Decimal("4.30")


def test_plans_originated_in_bulk_are_charged_each_merchant_s_fee():
    priced = MerchantFactory(fee_percent=Decimal("2.00"), fee_fixed=Decimal("0.05"))
    free = MerchantFactory(fee_percent=Decimal("0"), fee_fixed=Decimal("0"))
    plain = MerchantFactory()
    customer = UserFactory()
    plans = plans_originate_many(
        plans=[
            Plan(
                customer=customer,
                merchant=merchant,
                total_amount=Decimal("250.00"),
                currency="USD",
                installment_count=2,
                purchase_date=date(2026, 1, 31),
                status=Plan.Status.ACTIVE,
            )
            for merchant in (priced, free, plain)
        ]
    )

    fees = dict(Plan.objects.filter(pk__in=[p.pk for p in plans]).values_list("merchant_id", "merchant_fee"))
    assert fees == {priced.pk: Decimal("5.05"), free.pk: Decimal("0.00"), plain.pk: Decimal("10.30")}
    for merchant, fee in fees.items():
        payable = Posting.objects.filter(account__code=MERCHANT_PAYABLE, party_id=merchant)
        income = Posting.objects.filter(account__code=MERCHANT_FEE_INCOME, party_id=merchant)
        assert sorted(payable.values_list("amount", flat=True)) == sorted([Decimal("-250.00"), *([fee] if fee else [])])
        assert list(income.values_list("amount", flat=True)) == ([-fee] if fee else [])
    assert ledger_check(record=False).ok
