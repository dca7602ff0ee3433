"""Read queries of payments worth a name."""

from django.db.models import QuerySet

from accounts.models import User
from bnpl.selectors import plan_scope
from ledger.accounts import CUSTOMER_CREDIT
from ledger.models import Posting


def credit_transactions_for(*, viewer: User) -> QuerySet[Posting]:
    """Movements of credit balances ``viewer`` may see (own, on plans sold, or all), newest first."""
    return (
        Posting.objects.filter(plan_scope(viewer, "plan__"), account__code=CUSTOMER_CREDIT)
        .select_related("entry", "party")
        .order_by("-id")
    )
