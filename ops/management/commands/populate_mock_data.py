"""Demo data for local use: idempotent and deterministic; refused when DEBUG is off.

Without options: the users of the README; merchant-001's plans as a merchant makes them
now, offered and confirmed by their customer: ``usr-001``'s (one installment paid, a
pending and an approved refund) and ``usr-002``'s, whose card is declined (a failed
payment); an offer still waiting for ``usr-001`` to confirm it, and a manual-capture plan
``usr-001`` confirmed that waits for merchant-001 to capture it (AUTHORIZED). The one plan
bought in the past, ``debt-user-001``'s, is made in the back office (ACTIVE at once, by the
operator): it is overdue with a late fee and makes its customer a DEBT_USER. merchant-001 has
a payout account (an IBAN the fake payout gateway pays), and its day is settled and paid out
once, the first time. So the portal, the dashboard, the admin, the analytics and the
settlements all show something. ``--scale`` plans are made after that and left unsettled. ``--scale N`` adds N
customers with one ACTIVE plan each, inserted in bulk, for benchmarks. It lives in ``ops``,
the roof of the dependency chain, because it touches every app.
"""

import contextlib
import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.cards import card_brand
from accounts.models import User
from accounts.services import merchant_payout_account_set, user_register
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_confirm, plan_offer
from bnpl.services.origination import plan_create, plans_originate_many
from bnpl.services.sweep import overdue_sweep
from ledger.checks import ledger_check
from payments.models import Payment
from payments.services import PaymentDeclined, payment_collect
from refunds.models import Refund
from refunds.services import refund_request, refund_status_apply
from settlements.models import Payout, Settlement
from settlements.services.payouts import payout_send
from settlements.services.settle import settle_merchants

DEMO_PASSWORD = "demo12345"  # noqa: S105 - demo data, refused when DEBUG=False  # nosec B105
OPERATOR_USERNAME = "admin"
OPERATOR_PASSWORD = "admin123"  # noqa: S105 - demo data, refused when DEBUG=False  # nosec B105
MERCHANT_ID = "merchant-001"
SCALE_PREFIX = "scale-"
BATCH = 5000

DEMO_USERS = [
    {
        "user_id": "usr-001",
        "role": User.Role.CUSTOMER,
        "full_name": "Aziz Karimov",
        "phone_number": "+998901234567",
        "email": "usr-001@example.com",
        "passport_number": "AA1234567",
        "card_number": "4111111111111111",
        "credit_limit": Decimal("10000.00"),
    },
    {
        "user_id": "debt-user-001",
        "role": User.Role.CUSTOMER,
        "full_name": "Dilnoza Rahimova",
        "phone_number": "+998907654321",
        "email": "debt-user-001@example.com",
        "passport_number": "AB7654321",
        "card_number": "4242424242424242",
    },
    {
        "user_id": "usr-002",
        "role": User.Role.CUSTOMER,
        "full_name": "Bobur Aliyev",
        "phone_number": "+998909876543",
        "email": "usr-002@example.com",
        "card_number": "4000000000000002",  # the fake gateway declines it: the failed-payment example
    },
    {
        "user_id": MERCHANT_ID,
        "role": User.Role.MERCHANT,
        "full_name": "Demo Electronics LLC",
        "phone_number": "+998712000001",
        "email": "merchant-001@example.com",
        "webhook_secret": "whsec_demo_merchant_001",  # demo data, refused when DEBUG=False  # nosec B105
        "payout_account": "DE89370400440532013000",  # the IBAN of ISO 13616's own example
        "payout_account_name": "Demo Electronics LLC",
    },
]

# How each demo plan comes about: offered by merchant-001 and left PENDING, offered and
# confirmed (ACTIVE, or AUTHORIZED for a manual capture), or made in the back office.
PENDING, CONFIRMED, AUTHORIZED, BACK_OFFICE = "pending", "confirmed", "authorized", "back office"

# (customer, reference, total, installments, frequency, how, days since purchase). Only a plan
# made in the back office can be bought in the past: confirming makes a plan ACTIVE from today.
DEMO_PLANS = [
    ("usr-001", "demo-laptop", "1200.00", 4, Plan.Frequency.MONTHLY, CONFIRMED, 0),
    ("usr-001", "demo-headphones", "180.00", 6, Plan.Frequency.BIWEEKLY, CONFIRMED, 0),
    ("debt-user-001", "demo-phone", "800.00", 4, Plan.Frequency.MONTHLY, BACK_OFFICE, 45),
    ("usr-002", "demo-tablet", "300.00", 3, Plan.Frequency.MONTHLY, CONFIRMED, 0),
    ("usr-001", "demo-watch", "350.00", 4, Plan.Frequency.MONTHLY, PENDING, 0),
    ("usr-001", "demo-camera", "900.00", 3, Plan.Frequency.MONTHLY, AUTHORIZED, 0),
]


class Command(BaseCommand):
    help = "Create the demo users and plans of the README (local only; refused when DEBUG=False)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--scale", type=int, default=0, help="Also create N customers with a plan each, in bulk.")

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("populate_mock_data creates well-known passwords; it is refused when DEBUG=False.")
        with transaction.atomic():
            created = [spec["user_id"] for spec in DEMO_USERS if self._ensure_user(spec)]
            if self._ensure_operator():
                created.append(OPERATOR_USERNAME)
            plans = self._ensure_plans()
        # The sweep marks debt-user-001's first installment overdue, with a late fee (on
        # for the demo whatever the setting says).
        overdue_sweep(late_fees=True)
        self._ensure_activity()
        self._ensure_settlement()
        ledger_check()  # so the dashboard shows a ledger check from the start
        self.stdout.write(
            self.style.SUCCESS(f"Demo users created: {', '.join(created) or 'none'}; demo plans created: {plans}.")
        )
        if options["scale"]:
            self._scale(options["scale"])

    @staticmethod
    def _ensure_user(spec: dict) -> bool:
        if User.objects.filter(user_id=spec["user_id"]).exists():
            return False
        later = ("credit_limit", "webhook_secret", "payout_account", "payout_account_name")
        fields = {k: v for k, v in spec.items() if k not in later}
        user = user_register(username=spec["user_id"], password=DEMO_PASSWORD, **fields)
        # Demo-only values a user cannot register with: a higher limit, a well-known secret.
        for name in ("credit_limit", "webhook_secret"):
            if name in spec:
                setattr(user, name, spec[name])
        user.save()
        if "payout_account" in spec:
            merchant_payout_account_set(
                merchant=user, account=spec["payout_account"], name=spec["payout_account_name"], changed_by=user
            )
        return True

    @staticmethod
    def _ensure_operator() -> bool:
        if User.objects.filter(username=OPERATOR_USERNAME).exists():
            return False
        User.objects.create_superuser(
            OPERATOR_USERNAME, "admin@example.com", OPERATOR_PASSWORD, user_id="admin", full_name="Platform Operator"
        )
        return True

    @staticmethod
    def _ensure_plans() -> int:
        """The plans of DEMO_PLANS not made yet (a reference merchant-001 has used is skipped
        whatever became of its plan: an offer that has lapsed since stays EXPIRED)."""
        merchant = User.objects.get(user_id=MERCHANT_ID)
        operator = User.objects.get(username=OPERATOR_USERNAME)
        today = business_today()
        made = 0
        for user_id, reference, total, count, frequency, how, age in DEMO_PLANS:
            if Plan.objects.filter(merchant=merchant, merchant_reference=reference).exists():
                continue
            customer = User.objects.get(user_id=user_id)
            if how == BACK_OFFICE:
                plan_create(
                    customer=customer,
                    merchant=merchant,
                    total_amount=Decimal(total),
                    installment_count=count,
                    frequency=frequency,
                    merchant_reference=reference,
                    purchase_date=today - timedelta(days=age),
                    created_by=operator,
                )
            else:
                # What a merchant's POST /api/v1/plans/ and the customer's /confirm/ do.
                capture_mode = Plan.CaptureMode.MANUAL if how == AUTHORIZED else Plan.CaptureMode.AUTOMATIC
                offer = Offer(
                    total_amount=Decimal(total),
                    installment_count=count,
                    frequency=frequency,
                    merchant_reference=reference,
                    capture_mode=capture_mode,
                )
                plan, _ = plan_offer(customer=customer, merchant=merchant, offer=offer)
                if how != PENDING:
                    plan_confirm(plan_id=plan.pk, customer=customer)
            made += 1
        return made

    @staticmethod
    def _ensure_activity() -> None:
        """Payments (one paid, one declined) and refunds (one approved, one pending), once."""
        merchant = User.objects.get(user_id=MERCHANT_ID)
        laptop = Plan.objects.get(merchant=merchant, merchant_reference="demo-laptop")
        if not Payment.objects.filter(plan=laptop).exists():
            first = laptop.installments.get(sequence=1)
            payment_collect(plan_id=laptop.pk, installment_id=first.pk, payer=laptop.customer)
        tablet = Plan.objects.get(merchant=merchant, merchant_reference="demo-tablet")
        if not Payment.objects.filter(plan=tablet).exists():
            with contextlib.suppress(PaymentDeclined):
                payment_collect(plan_id=tablet.pk, amount=Decimal("100.00"), payer=tablet.customer)
        approved, _ = refund_request(
            plan_id=laptop.pk,
            transaction_id="rf-demo-approved",
            amount=Decimal("20.00"),
            reason="Scratched lid",
            requester=merchant,
        )
        if approved.status == Refund.Status.PENDING:
            refund_status_apply(refund_id=approved.pk, status=Refund.Status.APPROVED, source="operator")
        headphones = Plan.objects.get(merchant=merchant, merchant_reference="demo-headphones")
        refund_request(
            plan_id=headphones.pk,
            transaction_id="rf-demo-pending",
            amount=Decimal("30.00"),
            reason="Returned",
            requester=merchant,
        )

    @staticmethod
    def _ensure_settlement() -> None:
        """merchant-001's first settlement, paid out, once: today's business day (the demo's
        money is all posted today, and a day is settled up to its end), made by the settlement
        service as the nightly job makes it. The payout is sent here rather than left to a
        worker, so the demo shows it PAID whether a worker runs or not (sent twice, it is paid
        once: the same idempotency key, the answer applied once)."""
        merchant = User.objects.get(user_id=MERCHANT_ID)
        if Settlement.objects.filter(merchant=merchant).exists():
            return
        run = settle_merchants(day=business_today())
        pending = Payout.objects.filter(settlement__run=run, status=Payout.Status.PENDING).order_by("pk")
        for payout_id in pending.values_list("pk", flat=True):
            payout_send(payout_id=payout_id)

    def _scale(self, count: int) -> None:
        """``count`` customers ``scale-0000001``… with one plan each, bought up to 120 days
        ago (so some are overdue after the sweep), inserted in bulk."""
        started = time.perf_counter()
        merchant = User.objects.get(user_id=MERCHANT_ID)
        existing = set(
            User.objects.filter(user_id__startswith=SCALE_PREFIX).values_list("user_id", flat=True).iterator()
        )
        wanted = [i for i in range(1, count + 1) if f"{SCALE_PREFIX}{i:07d}" not in existing]
        password = make_password(DEMO_PASSWORD)  # hashing once: the slow part of a user
        today = business_today()
        for start in range(0, len(wanted), BATCH):
            with transaction.atomic():
                self._scale_batch(wanted[start : start + BATCH], merchant, password, today)
        self.stdout.write(
            self.style.SUCCESS(
                f"Scale data: {len(wanted)} customers with {len(wanted)} plans and {len(wanted) * 4} installments "
                f"created in {time.perf_counter() - started:.1f} s ({count - len(wanted)} already there)."
            )
        )
        overdue_sweep()

    @staticmethod
    def _scale_batch(indexes: list[int], merchant: User, password: str, today) -> None:
        card = "4111111111111111"
        users = User.objects.bulk_create(
            User(
                username=f"{SCALE_PREFIX}{i:07d}",
                user_id=f"{SCALE_PREFIX}{i:07d}",
                email=f"{SCALE_PREFIX}{i:07d}@example.com",
                full_name=f"Scale Customer {i}",
                password=password,
                phone_number=f"+99893{i:07d}",
                card_brand=card_brand(card),
                card_first6=card[:6],
                card_last4=card[-4:],
                card_token=f"tok_scale_{i}",
                credit_limit=Decimal("5000.00"),
            )
            for i in indexes
        )
        plans_originate_many(
            plans=[
                Plan(
                    customer=user,
                    merchant=merchant,
                    total_amount=Decimal("400.00"),
                    currency=settings.BNPL_DEFAULT_CURRENCY,
                    installment_count=4,
                    purchase_date=today - timedelta(days=i % 120),
                    merchant_reference=f"scale-{i}",
                    status=Plan.Status.ACTIVE,  # seeded as owed: the benchmarks read and pay them
                )
                for i, user in zip(indexes, users, strict=True)
            ],
            batch_size=BATCH,
        )
