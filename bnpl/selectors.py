"""Reads of plans, installments and debt, scoped by who is asking; and the plan lock."""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import Prefetch, Q, QuerySet

from accounts.models import User
from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today, days_past_due_bucket
from config.money import ZERO

BUCKETS = ("1-30", "31-60", "61-90", "90+")
PLAN_FIELDS = tuple(field.name for field in Plan._meta.concrete_fields)


def plan_scope(viewer: User, prefix: str = "") -> Q:
    """Operators see every plan, merchants the plans they sold, customers their own."""
    if viewer.is_operator:
        return Q()
    if viewer.is_merchant:
        return Q(**{f"{prefix}merchant": viewer})
    return Q(**{f"{prefix}customer": viewer})


def plan_list_for(*, viewer: User) -> QuerySet[Plan]:
    """Plans ``viewer`` may see, with parties and installments loaded in a fixed number of queries."""
    return (
        Plan.objects.filter(plan_scope(viewer))
        .select_related("customer", "merchant")
        # Of the parties only their public ids are shown: the rest of the user rows (an
        # encrypted passport among them) is neither read nor decrypted.
        .only(*PLAN_FIELDS, "customer__user_id", "merchant__user_id")
        .prefetch_related(Prefetch("installments", queryset=Installment.objects.order_by("sequence")))
    )


def plan_get_for(*, viewer: User, pk) -> Plan | None:
    """One plan ``viewer`` may see, with its parties and installments, in two plain queries
    (no prefetch machinery: this is the hottest read); None when out of scope or absent."""
    plan = plan_list_for(viewer=viewer).prefetch_related(None).filter(pk=pk).first()
    if plan is not None:
        plan_installments_loaded(plan, list(Installment.objects.filter(plan_id=plan.pk).order_by("sequence")))
    return plan


def plan_installments_loaded(plan: Plan, installments: list[Installment]) -> Plan:
    """Give ``plan`` the installments just written, as a prefetch would (``plan.installments.all()``
    then reads no rows): a plan that was just created is shown without being read back."""
    queryset = plan.installments.all()
    queryset._result_cache = sorted(installments, key=lambda installment: installment.sequence)
    queryset._prefetch_done = True
    plan._prefetched_objects_cache = {"installments": queryset}
    return plan


def installment_list_for(*, viewer: User) -> QuerySet[Installment]:
    """Installments of the plans ``viewer`` may see."""
    return Installment.objects.filter(plan_scope(viewer, "plan__")).select_related("plan").order_by("due_date", "id")


def plan_get_for_update(**lookup) -> Plan:
    """The plan matching ``lookup``, row-locked until the transaction ends (lock the parent first)."""
    # of=("self",): a lookup through a relation must not lock the related rows too.
    return Plan.objects.select_for_update(of=("self",)).get(**lookup)


@dataclass
class DebtStatus:
    user_id: str
    user_status: str
    has_overdue: bool
    total_debt: Decimal
    overdue_amount: Decimal
    fees_due: Decimal
    overdue_by_bucket: dict[str, Decimal]
    overdue_installments: list[dict] = field(default_factory=list)


def debt_status_for(*, customer: User, today: date | None = None) -> DebtStatus:
    """What ``customer`` owes now: everything unpaid, what is overdue (with days and bucket)
    and late fees due. Two queries."""
    today = today or business_today()
    open_installments = list(
        Installment.objects.filter(
            plan__customer=customer, status__in=(Installment.Status.UPCOMING, Installment.Status.OVERDUE)
        ).order_by("due_date", "id")
    )
    fees_due = sum(
        (fee.amount_remaining for fee in LateFee.objects.filter(plan__customer=customer, status=LateFee.Status.DUE)),
        ZERO,
    )
    overdue, buckets = [], dict.fromkeys(BUCKETS, ZERO)
    for installment in open_installments:
        if installment.status != Installment.Status.OVERDUE:
            continue
        days = (today - installment.due_date).days
        bucket = days_past_due_bucket(days)
        if bucket in buckets:
            buckets[bucket] += installment.amount_remaining
        overdue.append(
            {
                "id": installment.pk,
                "plan_id": installment.plan_id,
                "amount_due": installment.amount_due,
                "amount_remaining": installment.amount_remaining,
                "due_date": installment.due_date,
                "days_overdue": days,
                "bucket": bucket,
            }
        )
    overdue_amount = sum((row["amount_remaining"] for row in overdue), ZERO)
    return DebtStatus(
        user_id=customer.user_id,
        user_status=customer.status,
        has_overdue=bool(overdue),
        total_debt=sum((i.amount_remaining for i in open_installments), ZERO) + fees_due,
        overdue_amount=overdue_amount,
        fees_due=fees_due,
        overdue_by_bucket=buckets,
        overdue_installments=overdue,
    )
