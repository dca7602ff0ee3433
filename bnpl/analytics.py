"""Merchant analytics and platform figures: a fixed number of aggregate queries.

Money is per currency and never added across currencies: each figure of an amount is made
for one currency (``by_currency``). Counts (overdue installments, plans by status, the
on-time rate) are not money and cover every currency.

``success_rate`` is the share of installments paid on time among those that have fallen
due (due date before today, cancelled ones left out): paid, and paid on or before the
due date in the business time zone. None when nothing has fallen due yet.

Those figures are aggregates over whole tables (a million installments take a second), so
callers serve them through ``figures_cached``: computed by one process at a time, kept in
the cache for ``FIGURES_CACHE_SECONDS`` and refreshed ahead of time by beat (``ops.tasks``);
see docs/SCALING.md, "Dashboards, analytics and /metrics".
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connections, transaction
from django.db.models import Count, DecimalField, F, Q, Sum
from django.db.models.functions import Coalesce
from redis.exceptions import RedisError

from bnpl.models import PLAN_CAPTURED_STATUSES, Installment, LateFee, Plan
from bnpl.schedule import business_today, days_past_due_bucket
from bnpl.selectors import BUCKETS
from core.money import ZERO, to_money
from core.problems import DomainError

logger = logging.getLogger(__name__)

_MONEY = DecimalField(max_digits=14, decimal_places=2)
# Plans that hold money (installments, postings): those that became ACTIVE. An offer never
# taken (pending, authorized, declined, expired, voided) holds none.
MONEY_STATUSES = PLAN_CAPTURED_STATUSES
MONEY_FIELDS = (
    "total_revenue",
    "outstanding",
    "overdue_amount",
    "refunds_total",
    "processed_total",
    "merchant_fees_total",
    "late_fees_total",
    "payouts_total",
)
EMPTY = {"outstanding": ZERO, "overdue_installments": 0, "overdue_amount": ZERO}


def _money(expression, filter=None):
    return Coalesce(Sum(expression, filter=filter, output_field=_MONEY), ZERO, output_field=_MONEY)


def plan_figures(*, plans, today: date | None = None) -> dict:
    """Counts for the ``plans`` queryset (overdue installments and their buckets, on-time rate,
    plans by status, every status named) and, under ``by_currency``, per currency: what is
    outstanding (unpaid installments and late fees due), overdue (count and amount). The
    currencies are those of the plans that became ACTIVE, or the default one when none did.
    Four queries."""
    today = today or business_today()
    installments = Installment.objects.filter(plan__in=plans)
    open_ = Q(status__in=(Installment.Status.UPCOMING, Installment.Status.OVERDUE))
    per_currency = (
        installments.values("plan__currency")
        .annotate(
            outstanding=_money(F("amount_due") - F("amount_paid"), filter=open_),
            overdue_count=Count("id", filter=Q(status=Installment.Status.OVERDUE)),
            overdue_amount=_money(F("amount_due") - F("amount_paid"), filter=Q(status=Installment.Status.OVERDUE)),
            due=Count("id", filter=Q(due_date__lt=today) & ~Q(status=Installment.Status.CANCELLED)),
            on_time=Count(
                "id",
                filter=Q(due_date__lt=today, status=Installment.Status.PAID, paid_at__date__lte=F("due_date")),
            ),
        )
        .order_by()
    )
    fees_due = dict(
        LateFee.objects.filter(plan__in=plans, status=LateFee.Status.DUE)
        .values("plan__currency")
        .annotate(total=_money(F("amount") - F("amount_paid")))
        .order_by()
        .values_list("plan__currency", "total")
    )
    buckets = dict.fromkeys(BUCKETS, 0)
    for due_date, count in (
        installments.filter(status=Installment.Status.OVERDUE)
        .values("due_date")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("due_date", "n")
    ):
        bucket = days_past_due_bucket((today - due_date).days)
        if bucket in buckets:
            buckets[bucket] += count
    by_status = dict.fromkeys(Plan.Status.values, 0)
    currencies = set()
    for currency, status, n in (
        plans.values("currency", "status").annotate(n=Count("id")).order_by().values_list("currency", "status", "n")
    ):
        by_status[status] += n
        if status in MONEY_STATUSES:
            currencies.add(currency)
    money = {}
    overdue_count = due = on_time = 0
    for row in per_currency:
        # Counts add up across currencies; amounts stay in their own.
        overdue_count, due, on_time = overdue_count + row["overdue_count"], due + row["due"], on_time + row["on_time"]
        money[row["plan__currency"]] = {
            "outstanding": to_money(row["outstanding"] + fees_due.get(row["plan__currency"], ZERO)),
            "overdue_installments": row["overdue_count"],
            "overdue_amount": to_money(row["overdue_amount"]),
        }
    currencies |= set(money) | set(fees_due)
    if not currencies:
        currencies = {settings.BNPL_DEFAULT_CURRENCY}
    return {
        "overdue_installments": overdue_count,
        "overdue_by_bucket": buckets,
        "success_rate": None if not due else round(on_time / due, 4),
        "plans_by_status": by_status,
        "by_currency": [{"currency": currency, **money.get(currency, EMPTY)} for currency in sorted(currencies)],
    }


def in_one_currency(by_currency: list[dict], fields: tuple[str, ...]) -> dict:
    """The top-level figures of a per-currency answer: ``currency`` and each of ``fields`` as
    the one currency's when there is exactly one, else None (never a sum across currencies)."""
    single = by_currency[0] if len(by_currency) == 1 else {}
    return {"currency": single.get("currency"), **{name: single.get(name) for name in fields}}


# The dashboard's names for the ledger's money totals (ledger.selectors.MONEY_TOTALS).
LEDGER_FIELDS = {
    "total_revenue": "collected",
    "refunds_total": "refunded",
    "processed_total": "processed",
    "merchant_fees_total": "merchant_fees",
    "late_fees_total": "late_fees",
    "payouts_total": "paid_out",
}


def merchant_dashboard(
    *, plans, merchant=None, today: date | None = None, money: dict | None = None, figures: dict | None = None
) -> dict:
    """The analytics dashboard for ``plans`` and the payouts of ``merchant`` (every merchant's
    when None): money in and out from the ledger, the rest from the plans; each amount per
    currency (``by_currency``), and at the top level for the one currency when there is only
    one (None when there are several). Five queries.

    From the ledger (``ledger.selectors.MONEY_TOTALS``): ``total_revenue`` collected through
    payments; ``processed_total`` the totals of plans that became ACTIVE; ``refunds_total``
    approved refunds taken off unpaid installments, credited or paid back to the card;
    ``merchant_fees_total`` merchants' fees less those refunds gave back; ``late_fees_total``
    late fees charged less those waived (kept apart from the merchants' fees: customers pay
    them); ``payouts_total`` payouts paid to the merchant's bank account.

    ``money`` and ``figures``: ``money_totals`` and ``plan_figures`` of the same plans and
    payouts, when the caller has them already (one refresh serving several pages)."""
    from ledger.selectors import money_totals

    if money is None:
        money = money_totals(plans=plans, merchant_id=merchant.pk if merchant is not None else None)
    figures = dict(figures if figures is not None else plan_figures(plans=plans, today=today))
    rows = {row["currency"]: row for row in figures.pop("by_currency")}
    # Postings belong to plans that became ACTIVE, whose currencies are already listed (a plan
    # never goes back), or to payouts of their money; should one not be, its money is still
    # shown rather than dropped.
    for currency in money:
        rows.setdefault(currency, {"currency": currency, **EMPTY})
    by_currency = [
        {
            **rows[currency],
            **{field: money.get(currency, {}).get(total, ZERO) for field, total in LEDGER_FIELDS.items()},
        }
        for currency in sorted(rows)
    ]
    return {**figures, **in_one_currency(by_currency, MONEY_FIELDS), "by_currency": by_currency}


# --- Figures over whole tables, from a short-lived cache -----------------------------------

# Seconds a computation may hold the lock before another may start one (a holder that died).
FIGURES_LOCK_SECONDS = 120
# A stale entry is still served (with its age) while one caller refreshes it, up to this many
# times its freshness; older, it is gone and the next caller waits for a new one.
FIGURES_KEEP_FACTOR = 10
FIGURES_POLL_SECONDS = 0.05


class FiguresUnavailable(DomainError):
    """Nothing cached yet, and the one computation under way did not end within the wait."""

    status_code = 503
    code = "service_unavailable"
    title = "Service unavailable"
    default_detail = "The figures are being computed; retry in a few seconds."


@dataclass(frozen=True)
class Figures:
    """A computed value and when its computation started (epoch seconds; None: computed for
    this caller alone, inside its transaction)."""

    value: Any
    computed_at: float | None

    @property
    def age(self) -> float:
        return 0.0 if self.computed_at is None else max(time.time() - self.computed_at, 0.0)


def _cache_key(name: str) -> str:
    # The database's name too: a cache may serve several databases (staging and production,
    # the tests' and a developer's), and figures belong to one.
    return f"figures:{connections['default'].settings_dict['NAME']}:{name}"


def figures_refresh(name: str, compute: Callable[[], Any], *, unless_fresh: bool = False) -> Figures | None:
    """Compute ``name``'s figures and cache them, unless another process is computing them
    now (the lock, an atomic add in the shared cache): the new ``Figures``, or None when
    another holds the lock. Never two computations of the same figures at once.

    ``unless_fresh``: once the lock is ours, the figures cached meanwhile (by the holder
    before us) are returned as they are when they are fresh, not computed again."""
    cache, key = caches["default"], _cache_key(name)
    lock, token = f"{key}:lock", uuid.uuid4().hex
    if not cache.add(lock, token, timeout=FIGURES_LOCK_SECONDS):
        return None
    try:
        if unless_fresh and (entry := cache.get(key)) is not None:
            cached = Figures(*entry)
            if cached.age <= settings.FIGURES_CACHE_SECONDS:
                return cached
        started = time.time()
        value = compute()
        keep = max(settings.FIGURES_CACHE_SECONDS, 1) * FIGURES_KEEP_FACTOR
        cache.set(key, (value, started), timeout=keep)
        return Figures(value, started)
    finally:
        # Only our own lock: one that expired under a slow computation may be another's now.
        if cache.get(lock) == token:
            cache.delete(lock)


def figures_cached(name: str, compute: Callable[[], Any], *, using: str | None = None) -> Figures:
    """``name``'s figures as ``compute()`` makes them, served from the shared cache.

    - Cached less than ``FIGURES_CACHE_SECONDS`` ago: served as they are (beat refreshes the
      platform's figures every minute, so a caller normally never computes).
    - Older (kept up to ``FIGURES_KEEP_FACTOR`` times that): served as they are, after one
      caller, the one that takes the lock, has computed them again; the others do not wait.
    - None cached (a cold cache): the caller that takes the lock computes them; the others
      wait for its result, polling, at most ``FIGURES_WAIT_SECONDS``, then get
      ``FiguresUnavailable`` (503). However many callers arrive, one computation runs.
    - Inside a transaction on the connection ``using`` reads from (``None``: the default),
      or with ``FIGURES_CACHE_SECONDS`` at 0: computed for the caller and never cached, since
      they may include the transaction's own writes, which are nobody else's until it commits.
    - The cache unreachable: computed for the caller (logged).
    """
    max_age = settings.FIGURES_CACHE_SECONDS
    if max_age <= 0 or transaction.get_connection(using).in_atomic_block:
        return Figures(compute(), None)
    cache, key = caches["default"], _cache_key(name)
    try:
        entry = cache.get(key)
        if entry is not None:
            figures = Figures(*entry)
            if figures.age <= max_age:
                return figures
            return figures_refresh(name, compute, unless_fresh=True) or figures
        deadline = time.monotonic() + settings.FIGURES_WAIT_SECONDS
        while True:
            figures = figures_refresh(name, compute, unless_fresh=True)
            if figures is not None:
                return figures
            entry = cache.get(key)
            if entry is not None:
                return Figures(*entry)
            if time.monotonic() >= deadline:
                raise FiguresUnavailable()
            time.sleep(FIGURES_POLL_SECONDS)
    except (RedisError, OSError) as exc:
        logger.warning("Figures %s computed without the cache: it cannot be reached (%s)", name, type(exc).__name__)
        return Figures(compute(), None)


def dashboard_cache_name(merchant=None) -> str:
    """The ``figures_cached`` name of the analytics dashboard of ``merchant``'s plans and
    payouts (every merchant's: None)."""
    return "analytics:all" if merchant is None else f"analytics:merchant:{merchant.pk}"
