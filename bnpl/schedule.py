"""Installment schedules: amounts by the split rule, due dates without drift (DESIGN §3)."""

import calendar
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from core.money import split_amount

WEEKLY, BIWEEKLY, MONTHLY = "WEEKLY", "BIWEEKLY", "MONTHLY"


def business_today() -> date:
    """Today's date in the business time zone (``BNPL_TIME_ZONE``), not the server's."""
    return timezone.now().astimezone(ZoneInfo(settings.BNPL_TIME_ZONE)).date()


def add_months(anchor: date, months: int) -> date:
    """``anchor`` plus ``months``, the day clamped to the month's end (Jan 31 + 1 → Feb 28/29)."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def due_dates(purchase_date: date, count: int, frequency: str) -> list[date]:
    """The ``count`` due dates, the first one period after ``purchase_date``.

    Every date is computed from the anchor, never from the previous one, so clamping in a
    short month does not drift the rest: Jan 31 → Feb 28 → Mar 31.
    """
    if frequency == WEEKLY:
        return [purchase_date + timedelta(weeks=k) for k in range(1, count + 1)]
    if frequency == BIWEEKLY:
        return [purchase_date + timedelta(weeks=2 * k) for k in range(1, count + 1)]
    if frequency == MONTHLY:
        return [add_months(purchase_date, k) for k in range(1, count + 1)]
    raise ValueError(f"unknown frequency {frequency!r}")


def build_schedule(*, total, count: int, frequency: str, purchase_date: date) -> list[tuple[int, object, date]]:
    """``[(sequence, amount, due_date), ...]`` for a plan; the amounts add up to ``total``."""
    amounts = split_amount(total, count)
    return list(zip(range(1, count + 1), amounts, due_dates(purchase_date, count, frequency), strict=True))


def days_past_due_bucket(days: int) -> str:
    """The collections bucket for ``days`` past due: ``1-30``, ``31-60``, ``61-90`` or ``90+``."""
    if days <= 0:
        return "current"
    if days <= 30:
        return "1-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"
