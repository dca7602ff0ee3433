"""Autopay: charge customers' cards on file for installments that fall due (DESIGN §6).

A daily beat task finds, in one query, the customers with something due today (or due on
a retry day: +1 and +3 days by default) and fans them out to the workers as chunks of
customer ids (a group of tasks). A chunk's charges go through the same payment service
as a manual payment, as one batch (``payments_attempt_many``), with a gateway key derived from
the installment and the business day: whoever runs it, however often, one installment is
charged at most once a day (the key is unique, and a payment found under it is the
answer). Every attempt is a Payment (``source=AUTOPAY``, ``attempt`` 1, 2, 3…) with its
decline code.
"""

import logging
from datetime import date, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import F

from bnpl.models import Installment, Plan
from bnpl.schedule import business_today
from bnpl.selectors import OPEN_STATUSES
from config.celery import app
from core.problems import DomainError
from core.tasks import BrokerUnavailable, enqueue_many
from payments.models import Payment
from payments.services import Charge, payments_attempt_many

logger = logging.getLogger(__name__)


def _attempt_days(today: date) -> dict[date, int]:
    """Due dates charged today, with the attempt number a charge on each of them is."""
    offsets = [0, *sorted(set(settings.BNPL_AUTOPAY_RETRY_DAYS))]
    return {today - timedelta(days=offset): number for number, offset in enumerate(offsets, start=1)}


def _due(today: date):
    """The installments autopay charges today: open, due on an attempt day, of an active plan
    whose customer has autopay on, is active and has a card on file. Through the plans'
    customer (the plans' index), not the installments' own customer column, which is
    deliberately unindexed (see Installment.customer)."""
    due = Installment.objects.filter(
        status__in=OPEN_STATUSES,
        due_date__in=list(_attempt_days(today)),
        amount_paid__lt=F("amount_due"),
        plan__status=Plan.Status.ACTIVE,
        plan__customer__autopay=True,
        plan__customer__is_active=True,
    )
    return due.exclude(plan__customer__card_token="")  # "no card on file", not a credential  # nosec B106


def autopay_customers_due(*, today: date) -> list[int]:
    """Customers (ids) with autopay on, a card on file, and an installment to charge today."""
    due = _due(today).values_list("plan__customer_id", flat=True)
    return list(due.distinct().order_by("plan__customer_id"))


def autopay_run(*, today: date | None = None, chunk_customers: int | None = None) -> int:
    """Queue the customers with something due as chunks of ids (a group of tasks: more workers
    finish sooner); returns how many customers there are. Without a broker (eager mode) the
    chunks run here."""
    from payments.tasks import autopay_chunk_task

    if not settings.BNPL_AUTOPAY_ENABLED:
        return 0
    today = today or business_today()
    customers = autopay_customers_due(today=today)
    size = chunk_customers or settings.BNPL_AUTOPAY_CHUNK_CUSTOMERS
    # Ranges cut from the list of customers due, so every chunk has ``size`` of them.
    chunks = [(ids[0], ids[-1]) for ids in (customers[i : i + size] for i in range(0, len(customers), size))]
    day = today.isoformat()
    if not enqueue_many(autopay_chunk_task, [(first, last, day) for first, last in chunks]):
        if not app.conf.task_always_eager:
            raise BrokerUnavailable()  # the task fails and is retried: nothing was charged twice
        for first, last in chunks:
            autopay_chunk(first=first, last=last, today=today)
    logger.info("Autopay queued", extra={"customers": len(customers), "chunks": len(chunks), "business_date": day})
    return len(customers)


def autopay_chunk(*, first: int, last: int, today: date) -> dict[str, int]:
    """Charge the customers with ids ``first``..``last`` who have something due today, as
    one batch (``payments_attempt_many``: a fixed number of statements for the whole chunk);
    the counts of their charges (see ``autopay_customer``) plus ``errors``. Should the batch
    fail unexpectedly, its customers are charged one by one, and one whose charge fails is
    logged and left to reconciliation or the next retry day; the others are still charged.
    Run twice, it charges nothing twice."""
    counts = {"succeeded": 0, "failed": 0, "pending": 0, "skipped": 0, "errors": 0}
    due = _charges_due(today=today, customers=(first, last))
    try:
        return counts | _charged(due, payments_attempt_many([charge for _, charge in due]))
    except (OperationalError, InterfaceError):
        raise  # the database, not a customer: the task is retried (today's keys charge nothing twice)
    except Exception:
        logger.exception("Autopay's batch of customers %s..%s failed: charging them one by one", first, last)
    for customer_id in dict.fromkeys(customer_id for customer_id, _ in due):
        try:
            for outcome, number in autopay_customer(customer_id=customer_id, today=today).items():
                counts[outcome] += number
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception("Autopay failed for customer %s", customer_id)
            counts["errors"] += 1
    return counts


def autopay_customer(*, customer_id: int, today: date) -> dict[str, int]:
    """Charge one customer's installments due today (or on a retry day), each at most once
    today. Returns how many charges ``succeeded``, ``failed``, are ``pending`` (in another
    task's hands, or the gateway did not answer) or were ``skipped``."""
    due = _charges_due(today=today, customers=(customer_id, customer_id))
    return _charged(due, payments_attempt_many([charge for _, charge in due]) if due else [])


def _charges_due(*, today: date, customers: tuple[int, int]) -> list[tuple[int, Charge]]:
    """The charges of today's autopay for the customers with ids in ``customers`` (first,
    last) who have autopay on, a card on file and are active: ``(customer id, charge)`` by
    customer, due date, plan and sequence."""
    attempts = _attempt_days(today)
    first, last = customers
    due = _due(today).filter(plan__customer_id__gte=first, plan__customer_id__lte=last)
    due = due.order_by("plan__customer_id", "due_date", "plan_id", "sequence")
    return [
        (
            customer_id,
            Charge(
                plan_id=plan_id,
                payer_id=customer_id,
                installment_id=installment_id,
                gateway_key=f"autopay_{installment_id}_{today:%Y%m%d}",
                source=Payment.Source.AUTOPAY,
                attempt=attempts[due_date],
            ),
        )
        for installment_id, plan_id, customer_id, due_date in due.values_list(
            "id", "plan_id", "plan__customer_id", "due_date"
        )
    ]


def _charged(due: list[tuple[int, Charge]], outcomes: list) -> dict[str, int]:
    """The counts of ``outcomes`` (``payments_attempt_many``'s, of ``due``)."""
    counts = {"succeeded": 0, "failed": 0, "pending": 0, "skipped": 0}
    for (_, charge), outcome in zip(due, outcomes, strict=True):
        if isinstance(outcome, DomainError):
            # Paid meanwhile, being paid, plan closed, card gone, gateway down (left PENDING
            # under today's key, resumed by reconciliation): nothing to charge now.
            logger.info("Autopay skipped installment %s: %s", charge.installment_id, outcome.code)
            counts["skipped"] += 1
        elif isinstance(outcome, Exception):
            raise outcome  # the plan or the customer is gone: not a charge's outcome
        else:
            counts[outcome.status.lower()] += 1
    return counts
