"""The refund request's statements written out for PostgreSQL do what the ORM path does
(SQLite keeps the ORM): the plan locked within the requester's scope with its parties' ids,
the refunds it reads, the refund it inserts; and its answer is RefundOut's."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory
from bnpl.models import Plan
from bnpl.selectors import plan_get_for_update_with_parties
from refunds.api.serializers import RefundOut, refund_out
from refunds.models import Refund
from refunds.selectors import refund_request_standing
from refunds.services import refund_insert
from refunds.tests.factories import refund_requested

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the statements are PostgreSQL's")


def _locked(viewer, pk: int) -> tuple | None:
    """The plan's fields and its parties' ids as plan_get_for_update_with_parties gives them."""
    try:
        with transaction.atomic():
            plan = plan_get_for_update_with_parties(viewer=viewer, pk=pk)
    except Plan.DoesNotExist:
        return None
    return model_to_dict(plan) | {"id": plan.pk}, plan.customer.user_id, plan.merchant.user_id


@on_postgresql
def test_the_plan_locked_with_its_parties_is_the_plan_the_orm_finds_for_each_viewer(make_plan, monkeypatch):
    merchant, customer = MerchantFactory(), UserFactory()
    plan = make_plan(merchant=merchant, customer=customer, total="120.00")
    viewers = [merchant, customer, OperatorFactory(), MerchantFactory(), UserFactory()]
    pks = [plan.pk, plan.pk + 1000, 2**63]
    written = [_locked(viewer, pk) for viewer in viewers for pk in pks]
    monkeypatch.setattr("bnpl.selectors.postgresql", lambda: False)
    assert written == [_locked(viewer, pk) for viewer in viewers for pk in pks]
    assert written[0] == (
        model_to_dict(plan) | {"id": plan.pk},
        customer.user_id,
        merchant.user_id,
    ), "found by its merchant, with the parties' public ids"
    assert [row is not None for row in written] == [True, False, False] * 3 + [False] * 6, "others: absent"


@on_postgresql
def test_the_plan_is_locked_until_the_transaction_ends(make_plan):
    plan = make_plan()
    with transaction.atomic():
        plan_get_for_update_with_parties(viewer=plan.merchant, pk=plan.pk)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = %s AND l.pid = pg_backend_pid()",
                [Plan._meta.db_table],
            )
            modes = {row[0] for row in cursor.fetchall()}
    assert "RowShareLock" in modes  # the table lock FOR NO KEY UPDATE takes with its row lock


@on_postgresql
def test_what_a_request_reads_of_the_refunds_made_is_what_the_orm_reads(make_plan, monkeypatch):
    merchant = MerchantFactory()
    plan, other = make_plan(merchant=merchant, total="200.00"), make_plan(merchant=merchant, total="200.00")
    refund_requested(plan, "10.00", transaction_id="rf-pending")
    refund_requested(plan, "20.00", transaction_id="rf-processing", status=Refund.Status.PROCESSING)
    refund_requested(plan, "30.00", transaction_id="rf-rejected", status=Refund.Status.REJECTED)
    refund_requested(other, "40.00", transaction_id="rf-other-plan")
    asked = [
        (plan.pk, merchant.pk, "rf-new"),
        (plan.pk, merchant.pk, "rf-rejected"),
        (plan.pk, merchant.pk, "rf-other-plan"),
        (other.pk, merchant.pk, "rf-pending"),
        (plan.pk, MerchantFactory().pk, "rf-pending"),
        (make_plan(merchant=merchant).pk, merchant.pk, "rf-none"),
    ]
    written = [refund_request_standing(plan_id=p, merchant_id=m, transaction_id=t) for p, m, t in asked]
    monkeypatch.setattr("refunds.selectors.postgresql", lambda: False)
    assert written == [refund_request_standing(plan_id=p, merchant_id=m, transaction_id=t) for p, m, t in asked]
    assert written == [
        (False, Decimal("30.00")),
        (True, Decimal("30.00")),
        (True, Decimal("30.00")),
        (True, Decimal("40.00")),
        (False, Decimal("30.00")),
        (False, Decimal("0.00")),
    ]


def _new_refund(plan, transaction_id: str) -> Refund | None:
    return refund_insert(
        plan=plan,
        requester=plan.merchant,
        transaction_id=transaction_id,
        amount=Decimal("12.34"),
        reason="Returned 'item'",
        payout_method=Refund.PayoutMethod.CREDIT,
    )


@on_postgresql
def test_the_refund_inserted_is_the_row_the_orm_saves_and_a_taken_id_saves_nothing(make_plan, monkeypatch):
    plan = make_plan()
    before = timezone.now()
    with CaptureQueriesContext(connection) as statements:
        written = _new_refund(plan, "rf-written")
        assert (written.plan, written.customer, written.merchant, written.requested_by) == (
            plan,
            plan.customer,
            plan.merchant,
            plan.merchant,
        )
    assert len(statements.captured_queries) == 1, "its rows attached, not read again"
    assert written.pk is not None
    assert before <= written.created_at <= written.updated_at <= timezone.now()
    assert _new_refund(plan, "rf-written") is None
    monkeypatch.setattr("refunds.services.postgresql", lambda: False)
    by_orm = _new_refund(plan, "rf-orm")
    assert by_orm is not None

    def stored(refund) -> dict:
        row = model_to_dict(Refund.objects.get(pk=refund.pk)) | {"created_at": None}
        return row | {"id": None, "transaction_id": None}

    assert stored(written) == stored(by_orm)
    assert Refund.objects.get(pk=written.pk).created_at == written.created_at
    assert model_to_dict(Refund.objects.get(pk=written.pk)) == model_to_dict(written)
    assert model_to_dict(Refund.objects.get(pk=by_orm.pk)) == model_to_dict(by_orm)
    assert Refund.objects.filter(transaction_id="rf-written").count() == 1


def test_the_answer_is_refund_out_s(make_plan, settings):
    plan = make_plan(total="100.00")
    pending = refund_requested(plan, "10.00", transaction_id="rf-a")
    settings.BNPL_REFUND_PAYOUT_METHOD = "credit"
    approved = refund_requested(plan, "90.00", transaction_id="rf-b", status=Refund.Status.APPROVED)
    for refund in (pending, approved, Refund.objects.get(pk=approved.pk)):
        assert refund_out(refund) == RefundOut(refund).data
    assert refund_out(approved)["decided_at"] is not None
    assert refund_out(pending)["created_at"].endswith("Z")


@on_postgresql
def test_a_refund_request_sends_five_statements_reading_of_its_plan_only_what_it_uses(make_plan, as_user):
    """The key claimed, the plan locked with its parties (its columns the request uses, no
    other), what it has refunded, the refund, the answer kept: nothing read twice or later."""
    plan = make_plan(total="100.00")
    client = as_user(plan.merchant)
    client.get("/api/v1/auth/me/")  # the caller's own row read, as any first request reads it
    body = {"plan_id": plan.pk, "transaction_id": "rf-count", "amount": "1.00"}
    with CaptureQueriesContext(connection) as statements:
        answer = client.post("/api/v1/refunds/", body, format="json", HTTP_IDEMPOTENCY_KEY="rf-count")
    assert answer.status_code == 201, answer.content
    sent = [query["sql"] for query in statements.captured_queries if "SAVEPOINT" not in query["sql"]]
    assert len(sent) == 5, sent
    lock = next(sql for sql in sent if "FOR NO KEY UPDATE" in sql)
    assert "installment_count" not in lock
    assert answer.json()["user_id"] == plan.customer.user_id
