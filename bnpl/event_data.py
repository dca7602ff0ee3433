"""What merchant events say about plans and installments, defined once.

An installment's event is built in Python (``installment_event_data``) and, by the sweep,
in SQL for every row it marks (``installment_event_sql``); both come from the one list
below, so the two cannot drift apart. Values are as DjangoJSONEncoder writes them:
amounts and dates as text.
"""

from accounts.models import User
from bnpl.models import Installment, Plan

# (key, SQL over the installment ``{i}`` and its plan ``{p}``, value from the rows in Python)
_INSTALLMENT_FIELDS = (
    ("installment_id", "{i}.id", lambda i, p: i.pk),
    ("plan_id", "{i}.plan_id", lambda i, p: p.pk),
    ("merchant_reference", "{p}.merchant_reference", lambda i, p: p.merchant_reference),
    ("sequence", "{i}.sequence", lambda i, p: i.sequence),
    ("amount_due", "{i}.amount_due::text", lambda i, p: i.amount_due),
    ("amount_paid", "{i}.amount_paid::text", lambda i, p: i.amount_paid),
    ("currency", "{p}.currency", lambda i, p: p.currency),
    ("due_date", "to_char({i}.due_date, 'YYYY-MM-DD')", lambda i, p: i.due_date),
    ("status", "{i}.status", lambda i, p: i.status),
)


def installment_event_data(installment: Installment, plan: Plan) -> dict:
    """What a merchant event says about an installment."""
    return {key: value(installment, plan) for key, _, value in _INSTALLMENT_FIELDS}


def installment_event_sql(*, installment: str, plan: str) -> str:
    """``installment_event_data`` as a PostgreSQL ``jsonb`` expression over the table aliases
    ``installment`` (columns of bnpl_installment) and ``plan`` (of bnpl_plan)."""
    pairs = ", ".join(f"'{key}', {sql.format(i=installment, p=plan)}" for key, sql, _ in _INSTALLMENT_FIELDS)
    return f"jsonb_build_object({pairs})"


def plan_event_data(plan: Plan, customer: User | None = None) -> dict:
    """What a merchant event says about a plan."""
    customer_id = (customer or User.objects.only("user_id").get(pk=plan.customer_id)).user_id
    return {
        "plan_id": plan.pk,
        "customer_id": customer_id,
        "merchant_reference": plan.merchant_reference,
        "total_amount": plan.total_amount,
        "currency": plan.currency,
        "installment_count": plan.installment_count,
        "frequency": plan.frequency,
        "status": plan.status,
        "capture_mode": plan.capture_mode,
        "authorized_amount": plan.amount_authorized,
        "expires_at": plan.expires_at,
    }
