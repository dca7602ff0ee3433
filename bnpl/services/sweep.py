"""The overdue sweep: past-due installments become OVERDUE and their customers DEBT_USER,
late fees are charged; set-based, in chunks of plans that workers take side by side."""

import logging
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, QuerySet
from django.utils import timezone

from accounts.models import User
from bnpl.models import Installment, Plan, SweepChunk, SweepRun
from bnpl.schedule import business_today
from bnpl.selectors import sweep_lock_try
from bnpl.services.installments import installments_mark_overdue
from bnpl.services.late_fees import late_fees_charge
from core.tasks import enqueue_many

logger = logging.getLogger(__name__)


def overdue_sweep(
    *, today: date | None = None, late_fees: bool | None = None, fan_out: bool = False, chunk_plans: int | None = None
) -> SweepRun:
    """Mark past-due installments OVERDUE and their customers DEBT_USER; charge late fees.
    Customers left with nothing overdue are set back to NORMAL.

    The plans are split into id ranges of ``chunk_plans`` (``BNPL_SWEEP_CHUNK_PLANS``), each
    swept set-based in its own transaction (a fixed number of queries whatever its rows).
    With ``fan_out`` the chunks are published to the workers as a group of tasks, so more
    workers finish sooner, and the run is returned at once (``finished_at`` empty); after
    the last chunk the customers are updated and the run is closed. Otherwise, or when the
    broker cannot be reached, the chunks run here, one after the other, and the closed run
    is returned.

    One run at a time, and nothing done twice: while a run is open (started less than
    ``BNPL_SWEEP_STALE_MINUTES`` ago and not closed) a sweep resumes it, sending its chunks
    not yet done again, instead of starting another; a chunk task that was lost or failed
    is so taken up by the next sweep. A sweep that finds another one starting records a skip.
    """
    from bnpl.tasks import sweep_chunk_task

    started_at = timezone.now()
    with transaction.atomic():
        if not sweep_lock_try():
            logger.info("Overdue sweep skipped: another sweep is starting")
            return SweepRun.objects.create(
                business_date=today or business_today(), started_at=started_at, finished_at=started_at, skipped=True
            )
        run = _sweep_open(started_at) or _sweep_start(
            today=today or business_today(),
            late_fees=settings.BNPL_LATE_FEES_ENABLED if late_fees is None else late_fees,
            size=chunk_plans or settings.BNPL_SWEEP_CHUNK_PLANS,
            started_at=started_at,
        )
        chunks = list(run.chunks.filter(done_at__isnull=True).values_list("pk", flat=True))
    if not chunks:
        _sweep_close(run.pk)  # no plans, or every chunk done and the closing lost
    elif not (fan_out and enqueue_many(sweep_chunk_task, [(chunk,) for chunk in chunks])):
        for chunk in chunks:
            sweep_chunk(chunk_id=chunk)
    run.refresh_from_db()
    return run


def _sweep_open(now) -> SweepRun | None:
    """The run still open, if it started recently (a stale one is left, and the work redone)."""
    since = now - timedelta(minutes=settings.BNPL_SWEEP_STALE_MINUTES)
    return SweepRun.objects.filter(skipped=False, finished_at__isnull=True, started_at__gte=since).first()


def _sweep_start(*, today: date, late_fees: bool, size: int, started_at) -> SweepRun:
    """A new run with its chunks: every plan, in id ranges of ``size``. Customers in debt
    with nothing overdue are restored first: before the chunks mark this run's debtors, so
    only the customers already in debt are looked at (in the usual run, few)."""
    run = SweepRun.objects.create(
        business_date=today,
        started_at=started_at,
        late_fees=late_fees,
        customers_restored=_customers_restore(started_at),
    )
    bounds = Plan.objects.aggregate(first=Min("id"), last=Max("id"))
    firsts = range(bounds["first"], bounds["last"] + 1, size) if bounds["first"] is not None else ()
    SweepChunk.objects.bulk_create(
        SweepChunk(run=run, first_plan_id=first, last_plan_id=min(first + size - 1, bounds["last"])) for first in firsts
    )
    run.chunks_total = len(firsts)
    run.save(update_fields=["chunks_total"])
    return run


def sweep_chunk(*, chunk_id: int) -> bool:
    """Sweep one chunk's plans: mark their past-due installments OVERDUE (with an event each)
    and charge their late fees, in one transaction; after the run's last chunk, update the
    customers and close the run. False when the chunk was done already, or is being done by
    another worker (a redelivered task does nothing twice)."""
    with transaction.atomic():
        # of=("self",): lock the chunk only; its run's row is shared by every chunk.
        chunk = (
            SweepChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=chunk_id, done_at__isnull=True)
            .select_related("run")
            .first()
        )
        if chunk is None:
            return False
        run, now = chunk.run, timezone.now()
        plans = (chunk.first_plan_id, chunk.last_plan_id)
        cutoff = run.business_date - timedelta(days=settings.BNPL_GRACE_DAYS)
        chunk.installments_marked_overdue = installments_mark_overdue(
            cutoff=cutoff, today=run.business_date, now=now, plans=plans
        )
        chunk.late_fees_created = (
            late_fees_charge(
                today=run.business_date,
                plans=plans,
                memo=f"Late fees of sweep run {run.pk}, plans {plans[0]}-{plans[1]}",
            )
            if run.late_fees
            else 0
        )
        marked_debt = _customers_mark_debt(plans=plans, now=now) if chunk.installments_marked_overdue else 0
        chunk.done_at = now
        chunk.save(update_fields=["installments_marked_overdue", "late_fees_created", "done_at"])
        # The run's row is the meeting point: chunks ending together take turns here, so
        # exactly one of them sees every other chunk done.
        run = SweepRun.objects.select_for_update().get(pk=run.pk)
        run.installments_marked_overdue += chunk.installments_marked_overdue
        run.late_fees_created += chunk.late_fees_created
        run.customers_marked_debt += marked_debt
        run.save(update_fields=["installments_marked_overdue", "late_fees_created", "customers_marked_debt"])
        last = not run.chunks.filter(done_at__isnull=True).exists()
    if last:
        _sweep_close(run.pk)
    return True


def _customers_mark_debt(*, plans: tuple[int, int], now) -> int:
    """The customers of the plans ``plans`` (first and last id) with something overdue become
    DEBT_USER: each chunk its own, in its transaction, so more workers finish sooner.

    A customer whose row another transaction holds (a payment, or a chunk marking it too) is
    skipped rather than waited for: a chunk never waits on a customer while it holds its
    installments, so it cannot close a deadlock; the run's close marks any one left.

    Driven from the chunk's own rows: its overdue customers are read first (one table, by
    the chunk's range of plans), then their rows by primary key. As one statement with
    ``IN (subquery)`` the planner chose which side to loop over from the statistics, and
    statistics older than the last mass change may make every customer the outer side.
    """
    overdue = set(
        Installment.objects.filter(
            status=Installment.Status.OVERDUE, plan_id__gte=plans[0], plan_id__lte=plans[1]
        ).values_list("customer_id", flat=True)
    )
    marked = 0
    for ids in _batches(sorted(overdue)):
        # Locked and updated in one statement: the rows the subquery could lock, no round trip
        # with their ids between.
        free = (
            User.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(status=User.Status.NORMAL, pk__in=ids)
            .values("pk")
        )
        marked += User.objects.filter(pk__in=free).update(status=User.Status.DEBT_USER, updated_at=now)
    return marked


# Ids passed to one statement at most (SQLite's limit on parameters is 32,766).
_BATCH = 10_000


def _batches(ids: list[int]) -> list[list[int]]:
    return [ids[start : start + _BATCH] for start in range(0, len(ids), _BATCH)]


def _sweep_close(run_id: int) -> None:
    """After the run's last chunk: update the customers and close the run, once."""
    with transaction.atomic():
        run = SweepRun.objects.select_for_update().get(pk=run_id)
        if run.finished_at is None and not run.chunks.filter(done_at__isnull=True).exists():
            _sweep_finish(run)


def _customers_restore(now) -> int:
    """Customers in debt with nothing overdue any more are NORMAL again (a payment restores
    its customer at once; this catches the rest, a refund's cancellation say)."""
    return _customers_set_status(list(customers_in_debt_with_nothing_overdue()), User.Status.NORMAL, now)


# Who changes status, found with set operations (EXCEPT, INTERSECT), not an anti-join or a
# semi-join: a set operation is hashed or sorted whatever the statistics say, so no plan of
# it can loop over one side for each row of the other. The join forms went quadratic on
# statistics older than a mass change: after a sweep had marked 100,000 installments and
# 40,000 customers, the planner still believed in 1 overdue installment and 1 debtor and
# scanned every overdue installment for each debtor (139 s for an idle sweep of 1,000,000
# installments; docs/SCALING.md). Even a per-debtor probe (``LIMIT 1``) took the index on
# (status, due date, plan) rather than the partial one by customer, both "1 row" to it.
def customers_in_debt_with_nothing_overdue() -> QuerySet:
    """The ids of the customers DEBT_USER with no installment OVERDUE."""
    debtors = User.objects.filter(status=User.Status.DEBT_USER).order_by().values_list("pk", flat=True)
    return debtors.difference(_overdue_customers())


def customers_normal_with_something_overdue() -> QuerySet:
    """The ids of the customers NORMAL with an installment OVERDUE."""
    normal = User.objects.filter(status=User.Status.NORMAL).order_by().values_list("pk", flat=True)
    return normal.intersection(_overdue_customers())


def _overdue_customers():
    return (
        Installment.objects.filter(status=Installment.Status.OVERDUE).order_by().values_list("customer_id", flat=True)
    )


def _customers_set_status(ids: list[int], status: str, now) -> int:
    """Set the customers ``ids`` to ``status`` by primary key (a list of constants: its plan
    cannot depend on statistics either); those already there are left alone. Whether each
    has something overdue is asked again in the update itself (of the batch's own rows, by
    the partial index), so one that changed since the ids were read is not set wrongly."""
    debt = status == User.Status.DEBT_USER
    changed = 0
    for batch in _batches(sorted(ids)):
        overdue = _overdue_customers().filter(customer_id__in=batch)
        rows = User.objects.filter(pk__in=batch).exclude(status=status)
        rows = rows.filter(pk__in=overdue) if debt else rows.exclude(pk__in=overdue)
        changed += rows.update(status=status, updated_at=now)
    return changed


def _sweep_finish(run: SweepRun) -> None:
    """Customers with something overdue become DEBT_USER; the run is closed. Call with the
    run's row locked, after its last chunk."""
    now = timezone.now()
    # The chunks marked their own customers; this catches any other one with something
    # overdue (set back by hand, or skipped by a chunk while a payment held it).
    run.customers_marked_debt += _customers_set_status(
        list(customers_normal_with_something_overdue()), User.Status.DEBT_USER, now
    )
    run.finished_at = now
    run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
    run.save(update_fields=["customers_marked_debt", "finished_at", "duration_ms"])
    logger.info(
        "Overdue sweep done",
        extra={
            "marked_overdue": run.installments_marked_overdue,
            "marked_debt": run.customers_marked_debt,
            "restored": run.customers_restored,
            "late_fees": run.late_fees_created,
            "chunks": run.chunks_total,
        },
    )
