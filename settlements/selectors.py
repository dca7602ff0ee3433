"""Read queries and named locks of the settlements app."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import User
from settlements.models import Payout, Settlement, SettlementChunk, SettlementLine


def business_day_end(day: date) -> datetime:
    """The instant business day ``day`` ends in ``BNPL_TIME_ZONE``: what a settlement of
    that day takes in is what was posted before it."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(settings.BNPL_TIME_ZONE))


def merchants_lock(*, first: int, last: int) -> list[int]:
    """Lock the merchants with ids ``first``..``last`` (in id order) for the caller's
    transaction: settling and paying a merchant out take their turns on its row, so two
    runs (of one day or of two) never settle or pay the same money twice."""
    return list(
        User.objects.select_for_update(no_key=True)
        .filter(role=User.Role.MERCHANT, pk__gte=first, pk__lte=last)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def chunk_lock_try(chunk_id: int) -> SettlementChunk | None:
    """The chunk, locked, if it is not done and no other worker has it."""
    return (
        SettlementChunk.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk=chunk_id, done_at__isnull=True)
        .select_related("run")
        .first()
    )


def payout_lock(payout_id: int) -> Payout:
    return Payout.objects.select_for_update(of=("self",)).select_related("settlement").get(pk=payout_id)


def _visible_to(user: User, rows: QuerySet) -> QuerySet:
    """``rows`` (of merchants' settlements or payouts) as ``user`` may read them: a merchant
    its own, an operator all, anyone else none."""
    if user.is_operator:
        return rows
    if user.is_merchant:
        return rows.filter(merchant=user)
    return rows.none()


def settlements_visible(user: User) -> QuerySet[Settlement]:
    """The settlements ``user`` may read."""
    return _visible_to(user, Settlement.objects.select_related("merchant", "payout"))


def payouts_visible(user: User) -> QuerySet[Payout]:
    """The payouts ``user`` may read."""
    return _visible_to(user, Payout.objects.select_related("merchant", "settlement"))


def settlement_lines(settlement: Settlement) -> QuerySet[SettlementLine]:
    return SettlementLine.objects.filter(settlement=settlement).order_by("id")
