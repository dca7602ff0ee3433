"""The integrator's gate (issue 22): a Python client generated from the live schema by the
pinned openapi-python-client, checked by ``mypy --strict``, and an integrator's flow driven
over real HTTP only through its generated, typed functions.

The client is generated afresh from this code's schema on every run, so an operation whose
schema a generated client cannot use (no response body, an undocumented error, a wrong
type) fails here. Each endpoint added later joins the flow.
"""

import importlib
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.db import transaction

from accounts.services import merchant_payout_account_set
from accounts.tests.factories import DEFAULT_PASSWORD, MerchantFactory, OperatorFactory, UserFactory
from bnpl.tests.factories import late_fee_charged, plan_originated
from core.signatures import signature_header
from settlements.models import Payout
from settlements.services.payouts import payout_send
from settlements.tests.factories import settled

PACKAGE = "bnpl_client"
BIN = Path(sys.executable).parent

# The generator's own post-hooks (ruff fixes, then ruff format), but for PYI036: ruff's fix
# annotates the star-args of the generated ``Client.__exit__`` as ``object``, and those
# args are passed on to httpx's typed ``__exit__``, which mypy --strict then refuses.
GENERATOR_CONFIG = {
    "post_hooks": [
        "ruff check . --fix-only --extend-select=I --extend-ignore=PYI036",
        "ruff format .",
    ],
}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(  # noqa: S603 - fixed arguments, tools of this virtualenv  # nosec B603
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The directory holding the generated package ``bnpl_client``, built from the schema
    this code serves (no network: the schema is a file)."""
    where = tmp_path_factory.mktemp("generated_client")
    schema, config = where / "schema.json", where / "generator.json"
    call_command("spectacular", format="openapi-json", file=str(schema))
    config.write_text(json.dumps(GENERATOR_CONFIG))
    done = _run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(where / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        cwd=where,
    )
    assert done.returncode == 0, f"openapi-python-client failed:\n{done.stdout}\n{done.stderr}"
    return where


@pytest.fixture(scope="module")
def api(generated) -> ModuleType:
    sys.path.insert(0, str(generated))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(generated))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _signed_in(api: ModuleType, base_url: str, user) -> Any:
    """Sign in with a password: a typed token pair, then a client carrying its access token."""
    models, auth_token = _module("models"), _module("api.auth.auth_token")
    with api.Client(base_url=base_url) as anonymous:
        answer = auth_token.sync_detailed(
            client=anonymous, body=models.TokenObtainPairRequest(username=user.username, password=DEFAULT_PASSWORD)
        )
    assert answer.status_code == 200, answer.content
    assert isinstance(answer.parsed, models.TokenPairOut)
    assert answer.parsed.access
    assert answer.parsed.refresh
    return api.AuthenticatedClient(base_url=base_url, token=answer.parsed.access)


def _problem(answer, status: int, code: str) -> Any:
    """The answer is a typed ``Problem`` of this status and code."""
    assert answer.status_code == status, answer.content
    assert isinstance(answer.parsed, _module("models").Problem), answer.content
    assert (answer.parsed.status, answer.parsed.code) == (status, code)
    return answer.parsed


def test_the_generated_client_passes_mypy_strict(generated):
    done = _run(
        [str(BIN / "mypy"), "--strict", "--cache-dir", str(generated / ".mypy_cache"), PACKAGE],
        cwd=generated,
    )
    assert done.returncode == 0, f"mypy --strict on the generated client:\n{done.stdout}\n{done.stderr}"


@pytest.mark.postgres
def test_an_integrators_flow_through_the_generated_client(api, live_server, settings):
    models = _module("models")
    plans_create = _module("api.plans.plans_create")
    plans_confirm = _module("api.plans.plans_confirm")
    installments_pay = _module("api.installments.installments_pay")
    debt_retrieve = _module("api.debt.debt_retrieve")
    refunds_create = _module("api.refunds.refunds_create")
    settings.BNPL_PAYMENT_GATEWAY = "payments.gateways.FakeGateway"

    merchant = MerchantFactory()
    customer = UserFactory()
    declined = UserFactory(card_number="4000000000000002")  # the fake gateway declines 0002

    as_merchant, as_customer, as_declined = (
        _signed_in(api, live_server.url, user) for user in (merchant, customer, declined)
    )

    # An offer, made by the merchant with a key; the same request again is the first answer, replayed.
    order = models.PlanCreateInRequest(total_amount="400.00", user_id=customer.user_id, installment_count=4)
    created = plans_create.sync_detailed(client=as_merchant, body=order, idempotency_key="flow-plan-1")
    assert created.status_code == 201, created.content
    offer = created.parsed
    assert isinstance(offer, models.PlanOut)
    assert (offer.user_id, offer.total_amount) == (customer.user_id, "400.00")
    assert offer.status == models.PlanOutStatusEnum.PENDING
    assert isinstance(offer.checkout_url, str)
    assert [item.amount_due for item in offer.schedule] == ["100.00"] * 4
    assert created.headers.get("Idempotent-Replayed") != "true"

    replayed = plans_create.sync_detailed(client=as_merchant, body=order, idempotency_key="flow-plan-1")
    assert replayed.status_code == 201, replayed.content
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert isinstance(replayed.parsed, models.PlanOut)
    assert replayed.parsed.id == offer.id

    other_order = models.PlanCreateInRequest(total_amount="300.00", user_id=customer.user_id)
    reused = plans_create.sync_detailed(client=as_merchant, body=other_order, idempotency_key="flow-plan-1")
    _problem(reused, 422, "idempotency_key_reused")

    # The customer agrees: the plan is ACTIVE with its installments; agreeing again is a typed 409.
    confirmed = plans_confirm.sync_detailed(offer.id, client=as_customer, idempotency_key="flow-confirm-1")
    assert confirmed.status_code == 200, confirmed.content
    plan = confirmed.parsed
    assert isinstance(plan, models.PlanOut)
    assert plan.status == models.PlanOutStatusEnum.ACTIVE
    assert [installment.amount_due for installment in plan.installments] == ["100.00"] * 4
    _problem(plans_confirm.sync_detailed(offer.id, client=as_customer), 409, "plan_not_pending")

    # The customer pays the first installment; paying it again finds nothing to pay.
    first, second = plan.installments[0], plan.installments[1]
    paid = installments_pay.sync_detailed(
        first.id, client=as_customer, body=models.InstallmentPayInRequest(), idempotency_key="flow-pay-1"
    )
    assert paid.status_code == 201, paid.content
    assert isinstance(paid.parsed, models.PaymentOut)
    assert (paid.parsed.amount, paid.parsed.status) == ("100.00", models.PaymentOutStatusEnum.SUCCEEDED)
    assert [(a.installment_id, a.amount) for a in paid.parsed.allocations] == [(first.id, "100.00")]

    again = installments_pay.sync_detailed(
        first.id, client=as_customer, body=models.InstallmentPayInRequest(), idempotency_key="flow-pay-2"
    )
    _problem(again, 409, "nothing_to_pay")

    too_much = installments_pay.sync_detailed(
        second.id,
        client=as_customer,
        body=models.InstallmentPayInRequest(amount="100.01"),
        idempotency_key="flow-pay-3",
    )
    _problem(too_much, 422, "overpayment")

    # The debt: what is left of the plan.
    debt = debt_retrieve.sync_detailed(customer.user_id, client=as_customer)
    assert debt.status_code == 200, debt.content
    assert isinstance(debt.parsed, models.DebtStatusOut)
    assert (debt.parsed.user_id, debt.parsed.total_debt, debt.parsed.has_overdue) == (customer.user_id, "300.00", False)
    assert debt.parsed.user_status == models.CustomerStatusEnum.NORMAL

    # The merchant refunds part of the purchase, back to the card.
    refund = refunds_create.sync_detailed(
        client=as_merchant,
        body=models.RefundCreateInRequest(
            plan_id=plan.id,
            transaction_id="flow-refund-1",
            amount="50.00",
            reason="One item returned",
            payout_method=models.PayoutMethodEnum.CARD,
        ),
        idempotency_key="flow-refund-1",
    )
    assert refund.status_code in (200, 201), refund.content
    assert isinstance(refund.parsed, models.RefundOut)
    assert (refund.parsed.plan_id, refund.parsed.amount, refund.parsed.transaction_id) == (
        plan.id,
        "50.00",
        "flow-refund-1",
    )

    # A declined card: 402, typed.
    declined_plan = plans_create.sync_detailed(
        client=as_merchant,
        body=models.PlanCreateInRequest(total_amount="200.00", user_id=declined.user_id, installment_count=2),
        idempotency_key="flow-plan-2",
    )
    assert isinstance(declined_plan.parsed, models.PlanOut), declined_plan.content
    agreed = plans_confirm.sync_detailed(declined_plan.parsed.id, client=as_declined)
    assert isinstance(agreed.parsed, models.PlanOut), agreed.content
    refused = installments_pay.sync_detailed(
        agreed.parsed.installments[0].id,
        client=as_declined,
        body=models.InstallmentPayInRequest(),
        idempotency_key="flow-pay-4",
    )
    assert _problem(refused, 402, "payment_declined").additional_properties["decline_code"] == "card_declined"

    # A gateway that does not answer: 502 gateway_unavailable, the one answer to retry with the same key.
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.TimeoutGateway"
    timed_out = installments_pay.sync_detailed(
        second.id, client=as_customer, body=models.InstallmentPayInRequest(), idempotency_key="flow-pay-5"
    )
    _problem(timed_out, 502, "gateway_unavailable")

    for client in (as_merchant, as_customer, as_declined):
        client.get_httpx_client().close()


def _schema(generated: Path) -> dict[str, Any]:
    """The schema the client was generated from, by operationId."""
    paths = json.loads((generated / "schema.json").read_text())["paths"]
    return {
        operation["operationId"]: operation
        for path in paths.values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def _operations(generated: Path) -> dict[str, Any]:
    """The generated module of each operation (``api/<tag>/<operation_id>.py``), by operationId."""
    return {
        path.stem: _module(f"api.{path.parent.name}.{path.stem}")
        for path in (generated / PACKAGE / "api").glob("*/*.py")
        if path.stem != "__init__"
    }


def test_every_operation_is_generated(api, generated):
    assert sorted(_operations(generated)) == sorted(_schema(generated))


def test_every_documented_error_is_a_typed_problem(api, generated):
    """For each operation and each 4xx/5xx its schema documents, the generated parser turns a
    problem answer into the typed ``Problem``: an error the client could not type (an
    undocumented status raises ``UnexpectedStatus``; a non-Problem body) fails here."""
    models, operations = _module("models"), _operations(generated)
    documented = [
        (operation_id, int(status))
        for operation_id, operation in sorted(_schema(generated).items())
        for status in operation["responses"]
        if status[0] in "45"
    ]
    assert {operation_id for operation_id, _ in documented} == set(operations)
    with api.Client(base_url="http://testserver", raise_on_unexpected_status=True) as client:
        for operation_id, status in documented:
            code = f"code_{status}"
            body = {"type": f"/problems/{code}", "title": "T", "status": status, "detail": "D", "code": code}
            answer = operations[operation_id]._build_response(
                client=client,
                response=httpx.Response(status, json=body, headers={"content-type": "application/problem+json"}),
            )
            assert isinstance(answer.parsed, models.Problem), (operation_id, status, answer.parsed)
            assert (answer.parsed.status, answer.parsed.code) == (status, code), (operation_id, status)
        # And the check can fail: a status no operation documents is not typed.
        with pytest.raises(_module("errors").UnexpectedStatus):
            operations["plans_list"]._build_response(client=client, response=httpx.Response(418, json=body))
    # The rules the schema's postprocessing applies to every operation, checked as well.
    assert {(operation_id, status) for operation_id in operations for status in (429, 503)} <= set(documented)


@pytest.mark.postgres
def test_every_operation_answers_its_documented_type(api, generated, live_server, settings):
    """Each of the schema's operations, called once through its generated ``sync_detailed``,
    answers its documented success status, parsed as its documented model (None for 204)."""
    models, operations = _module("models"), _operations(generated)
    settings.BNPL_PAYMENT_GATEWAY = "payments.gateways.FakeGateway"
    called: set[str] = set()

    def call(operation_id: str, code: int, expected: Any, *args: Any, **kwargs: Any) -> Any:
        answer = operations[operation_id].sync_detailed(*args, **kwargs)
        assert answer.status_code == code, (operation_id, answer.content)
        if expected is None:
            assert answer.parsed is None, (operation_id, answer.parsed)
        else:
            assert isinstance(answer.parsed, expected), (operation_id, answer.content)
        called.add(operation_id)
        return answer.parsed

    # A late fee first (made here, the database is the live server's): a plan bought 90 days
    # ago whose first installment a sweep then found overdue. Before any other plan, so the
    # sweep, run on a past day, finds nothing else due.
    merchant = MerchantFactory(webhook_secret="whsec_integrator")
    customer, late_customer, operator = UserFactory(), UserFactory(), OperatorFactory()
    late_plan = plan_originated(
        total="400.00", customer=late_customer, merchant=merchant, purchase_date=date.today() - timedelta(days=90)
    )
    fee = late_fee_charged(late_plan)

    as_merchant, as_customer, as_late, as_operator = (
        _signed_in(api, live_server.url, user) for user in (merchant, customer, late_customer, operator)
    )
    called.add("auth_token")  # by _signed_in, typed there

    # Signing up, in and out: register, a token pair, refresh it, revoke the refresh token.
    with api.Client(base_url=live_server.url) as anonymous:
        registered = call(
            "auth_register",
            201,
            models.RegisteredOut,
            client=anonymous,
            body=models.RegisterInRequest(
                username="integrator-new",
                password=DEFAULT_PASSWORD,
                role=models.RegisterInRoleEnum.CUSTOMER,
                full_name="New Customer",
                phone_number="+998911234567",
                email="integrator-new@example.com",
            ),
        )
        pair = call(
            "auth_token",
            200,
            models.TokenPairOut,
            client=anonymous,
            body=models.TokenObtainPairRequest(username="integrator-new", password=DEFAULT_PASSWORD),
        )
        refreshed = call(
            "auth_token_refresh",
            200,
            models.TokenPairOut,
            client=anonymous,
            body=models.TokenRefreshRequest(refresh=pair.refresh),
        )
        assert refreshed.access
        call(
            "auth_logout",
            204,
            None,
            client=anonymous,
            body=models.LogoutInRequest(refresh=refreshed.refresh or pair.refresh),
        )
    me = call("auth_me", 200, models.MeOut, client=as_customer)
    assert me.user_id == customer.user_id
    assert (me.fee_percent, me.fee_fixed) == (None, None)  # a price is a merchant's only
    merchant_me = call("auth_me", 200, models.MeOut, client=as_merchant)
    assert (merchant_me.fee_percent, merchant_me.fee_fixed) == ("4.00", "0.30")  # the defaults
    updated = call(
        "auth_me_update", 200, models.MeOut, client=as_customer, body=models.PatchedMeUpdateInRequest(autopay=True)
    )
    assert updated.user_id == customer.user_id
    payout = call(
        "auth_me_update",
        200,
        models.MeOut,
        client=as_merchant,
        body=models.PatchedMeUpdateInRequest(
            payout_account="GB82 WEST 1234 5698 7654 32", payout_account_name="Integrator Shop"
        ),
    )
    assert (payout.payout_account, payout.payout_account_kind) == ("GB82**************5432", "IBAN")
    merchant.refresh_from_db()
    assert merchant.payout_account == "GB82WEST12345698765432"
    power = call("auth_me_spending_power", 200, models.SpendingPowerOut, client=as_customer)
    assert [(p.currency, p.outstanding, p.reserved) for p in power.by_currency] == [("USD", "0.00", "0.00")]
    assert power.by_currency[0].available == power.by_currency[0].credit_limit
    users = call("users_list", 200, models.PaginatedUserOutList, client=as_operator)
    assert registered.user_id in {user.user_id for user in users.results}
    assert call("users_retrieve", 200, models.UserOut, customer.user_id, client=as_customer).user_id == customer.user_id

    # Offers: one the customer confirms, one declined, one authorized and captured in part,
    # one authorized and voided.
    def offered(reference: str, capture_mode: Any = None) -> Any:
        extra = {} if capture_mode is None else {"capture_mode": capture_mode}
        body = models.PlanCreateInRequest(
            total_amount="300.00", user_id=customer.user_id, installment_count=3, merchant_reference=reference, **extra
        )
        return call("plans_create", 201, models.PlanOut, client=as_merchant, body=body, idempotency_key=reference)

    plan = call("plans_confirm", 200, models.PlanOut, offered("all-plan-1").id, client=as_customer)
    assert plan.status == models.PlanOutStatusEnum.ACTIVE
    refused = call("plans_decline", 200, models.PlanOut, offered("all-plan-2").id, client=as_customer)
    assert refused.status == models.PlanOutStatusEnum.DECLINED
    manual = models.CaptureModeEnum.MANUAL
    authorized = call("plans_confirm", 200, models.PlanOut, offered("all-plan-3", manual).id, client=as_customer)
    assert authorized.status == models.PlanOutStatusEnum.AUTHORIZED
    captured = call(
        "plans_capture",
        200,
        models.PlanOut,
        authorized.id,
        client=as_merchant,
        body=models.PlanCaptureInRequest(amount="150.00"),
    )
    assert (captured.status, captured.total_amount) == (models.PlanOutStatusEnum.ACTIVE, "150.00")
    to_void = call("plans_confirm", 200, models.PlanOut, offered("all-plan-4", manual).id, client=as_customer)
    voided = call("plans_void", 200, models.PlanOut, to_void.id, client=as_operator)
    assert voided.status == models.PlanOutStatusEnum.VOIDED

    # The plan's installments, paid one by one and then off as a whole.
    listed = call("plans_list", 200, models.PaginatedPlanOutList, client=as_customer, merchant_reference="all-plan-1")
    assert [p.id for p in listed.results] == [plan.id]
    assert call("plans_retrieve", 200, models.PlanOut, plan.id, client=as_customer).id == plan.id
    installments = call(
        "installments_list", 200, models.PaginatedInstallmentOutList, client=as_customer, plan_id=plan.id
    )
    first = installments.results[0]
    assert call("installments_retrieve", 200, models.InstallmentOut, first.id, client=as_customer).id == first.id
    call(
        "installments_pay",
        201,
        models.PaymentOut,
        first.id,
        client=as_customer,
        body=models.InstallmentPayInRequest(),
        idempotency_key="all-pay-1",
    )
    paid_off = call(
        "plans_pay",
        201,
        models.PaymentOut,
        plan.id,
        client=as_customer,
        body=models.PlanPayInRequest(amount="200.00"),
        idempotency_key="all-pay-2",
    )
    assert paid_off.amount == "200.00"
    payments = call("payments_list", 200, models.PaginatedPaymentOutList, client=as_customer, plan_id=plan.id)
    assert len(payments.results) == 2
    assert call("payments_retrieve", 200, models.PaymentOut, paid_off.id, client=as_customer).id == paid_off.id
    debt = call("debt_retrieve", 200, models.DebtStatusOut, customer.user_id, client=as_customer)
    assert (debt.currency, debt.total_debt) == ("USD", "150.00")  # the captured plan
    assert [(d.currency, d.total_debt) for d in debt.by_currency] == [("USD", "150.00")]

    # Refunds of the paid-off plan: one kept as credit (approved), one to the card (rejected).
    credited = call(
        "refunds_create",
        201,
        models.RefundOut,
        client=as_merchant,
        body=models.RefundCreateInRequest(
            plan_id=plan.id,
            transaction_id="all-refund-1",
            amount="50.00",
            reason="Returned",
            payout_method=models.PayoutMethodEnum.CREDIT,
        ),
        idempotency_key="all-refund-1",
    )
    approved = call("refunds_approve", 200, models.RefundOut, credited.id, client=as_operator)
    assert approved.status == models.RefundOutStatusEnum.APPROVED
    to_reject = call(
        "refunds_create",
        201,
        models.RefundOut,
        client=as_merchant,
        body=models.RefundCreateInRequest(
            plan_id=plan.id,
            transaction_id="all-refund-2",
            amount="20.00",
            payout_method=models.PayoutMethodEnum.CARD,
        ),
    )
    rejected = call("refunds_reject", 200, models.RefundOut, to_reject.id, client=as_operator)
    assert rejected.status == models.RefundOutStatusEnum.REJECTED
    refunds = call("refunds_list", 200, models.PaginatedRefundOutList, client=as_merchant, plan_id=plan.id)
    assert {refund.id for refund in refunds.results} == {credited.id, to_reject.id}
    assert call("refunds_retrieve", 200, models.RefundOut, credited.id, client=as_customer).id == credited.id
    credits = call("credit_transactions_list", 200, models.PaginatedCreditTransactionOutList, client=as_customer)
    assert [credit.amount for credit in credits.results] == ["50.00"]
    credit = credits.results[0]
    assert call("credit_transactions_retrieve", 200, models.CreditTransactionOut, credit.id, client=as_customer)

    # The merchant's signed webhook, on a refund already final: answered at once, nothing applied.
    status_body = models.RefundStatusInRequest(refund_id="all-refund-1", status=models.RefundWebhookStatusEnum.APPROVED)
    sent = httpx.Request("POST", live_server.url, json=status_body.to_dict()).content  # the bytes the client sends
    with api.Client(base_url=live_server.url) as anonymous:
        answered = call(
            "refund_status_webhook",
            200,
            models.RefundStatusOut,
            client=anonymous,
            body=status_body,
            bnpl_merchant=merchant.user_id,
            bnpl_signature=signature_header("whsec_integrator", int(time.time()), sent),
        )
    assert (answered.applied, answered.processing_mode) == (False, models.ProcessingModeEnum.SYNC)

    # The merchant's events and analytics.
    events = call("events_list", 200, models.PaginatedEventOutList, client=as_merchant)
    assert events.results
    assert call("events_retrieve", 200, models.EventOut, events.results[0].id, client=as_merchant)
    call("analytics_dashboard", 200, models.AnalyticsOut, client=as_merchant)

    # The late fee: the customer sees it, an operator waives it.
    fees = call("late_fees_list", 200, models.PaginatedLateFeeOutList, client=as_late)
    assert [f.id for f in fees.results] == [fee.pk]
    assert call("late_fees_retrieve", 200, models.LateFeeOut, fee.pk, client=as_late).id == fee.pk
    waived = call(
        "late_fees_waive",
        200,
        models.LateFeeOut,
        fee.pk,
        client=as_operator,
        body=models.LateFeeWaiveInRequest(reason="First time"),
    )
    assert waived.status == models.LateFeeOutStatusEnum.WAIVED

    # The day settled: the merchant's captures and refunds, paid out to the account it set
    # above; a merchant whose bank refuses the payout (an account ending 0002); one with no
    # account, settled and not paid. Payouts are sent here (no worker runs in this test).
    refused = MerchantFactory()
    with transaction.atomic():
        merchant_payout_account_set(merchant=refused, account="123450002", name="Closed Shop", changed_by=refused)
    unpaid = MerchantFactory()
    for other in (refused, unpaid):
        plan_originated(total="100.00", merchant=other)
    settled()
    for pending in Payout.objects.filter(status=Payout.Status.PENDING):
        payout_send(payout_id=pending.pk)
    settlements = call("settlements_list", 200, models.PaginatedSettlementOutList, client=as_merchant, currency="USD")
    assert [s.merchant_id for s in settlements.results] == [merchant.user_id]
    settlement = call("settlements_retrieve", 200, models.SettlementOut, settlements.results[0].id, client=as_merchant)
    assert (settlement.payout_status, settlement.payout_amount) == ("PAID", settlement.net)
    lines = call("settlements_lines", 200, models.PaginatedSettlementLineOutList, settlement.id, client=as_merchant)
    assert lines.count == settlement.line_count
    assert {line.type_ for line in lines.results} >= {
        models.SettlementLineOutTypeEnum.CAPTURE,
        models.SettlementLineOutTypeEnum.REFUND,
    }
    assert sum(Decimal(line.net) for line in lines.results) == Decimal(settlement.net)
    # The settlement file: the typed function parses a 200 as JSON only (the generator reads
    # one media type per status), so the file comes through the client's own httpx client,
    # with its token.
    with pytest.raises(json.JSONDecodeError):
        operations["settlements_lines"].sync_detailed(
            settlement.id, client=as_merchant, format_=models.SettlementsLinesFormat.CSV
        )
    csv_file = as_merchant.get_httpx_client().get(
        f"/api/v1/settlements/{settlement.id}/lines/", params={"format": "csv"}
    )
    assert (csv_file.status_code, csv_file.headers["content-type"]) == (200, "text/csv; charset=utf-8")
    assert f"settlement-{settlement.business_date}-USD-{settlement.id}.csv" in csv_file.headers["content-disposition"]
    assert len(csv_file.text.splitlines()) == 1 + settlement.line_count
    paid = call("payouts_retrieve", 200, models.PayoutOut, settlement.payout_id, client=as_merchant)
    assert (paid.status, paid.amount, paid.account) == (
        models.SettlementPayoutStatusEnum.PAID,
        settlement.net,
        "GB82**************5432",
    )
    failed = call(
        "payouts_list", 200, models.PaginatedPayoutOutList, client=as_operator, status=models.PayoutsListStatus.FAILED
    )
    assert [(p.merchant_id, p.failure_code, p.amount) for p in failed.results] == [
        (refused.user_id, "account_closed", "95.70")
    ]
    not_paid = call(
        "settlements_list", 200, models.PaginatedSettlementOutList, client=as_operator, merchant_id=unpaid.user_id
    )
    assert [(s.net, s.payout_id, s.payout_status) for s in not_paid.results] == [("95.70", None, None)]

    for client in (as_merchant, as_customer, as_late, as_operator):
        client.get_httpx_client().close()
    assert sorted(set(_schema(generated)) - called) == []


@pytest.mark.postgres
def test_errors_over_http_are_typed_problems(api, generated, live_server, settings):
    """Live errors of each kind, typed by the generated client (402, 409, 422 and 502 of
    installments_pay are in the flow above)."""
    models, operations = _module("models"), _operations(generated)
    settings.BNPL_PAYMENT_GATEWAY = "payments.gateways.FakeGateway"
    merchant = MerchantFactory(webhook_secret="whsec_errors")
    customer, operator = UserFactory(), OperatorFactory()
    declined = UserFactory(card_number="4000000000000002")
    plan = plan_originated(total="300.00", count=3, customer=customer, merchant=merchant)
    declined_plan = plan_originated(total="200.00", count=2, customer=declined, merchant=merchant)
    as_merchant, as_customer, as_declined, as_operator = (
        _signed_in(api, live_server.url, user) for user in (merchant, customer, declined, operator)
    )

    # 400: a malformed amount, each field named.
    bad = operations["plans_create"].sync_detailed(
        client=as_merchant,
        body=models.PlanCreateInRequest(total_amount="12,50", user_id=customer.user_id),
    )
    assert "total_amount" in _problem(bad, 400, "validation_error").errors.additional_properties

    # 401: no token; a webhook with a wrong signature.
    with api.Client(base_url=live_server.url) as anonymous:
        _problem(operations["auth_me"].sync_detailed(client=anonymous), 401, "not_authenticated")
        unsigned = operations["refund_status_webhook"].sync_detailed(
            client=anonymous,
            body=models.RefundStatusInRequest(refund_id="nope", status=models.RefundWebhookStatusEnum.APPROVED),
            bnpl_merchant=merchant.user_id,
            bnpl_signature=f"t={int(time.time())},v1={'0' * 64}",
        )
        _problem(unsigned, 401, "invalid_signature")

    # 403: a customer deciding a refund; a customer reading events.
    refund = operations["refunds_create"].sync_detailed(
        client=as_merchant,
        body=models.RefundCreateInRequest(plan_id=plan.pk, transaction_id="err-refund-1", amount="30.00"),
    )
    assert isinstance(refund.parsed, models.RefundOut), refund.content
    _problem(
        operations["refunds_approve"].sync_detailed(refund.parsed.id, client=as_customer), 403, "permission_denied"
    )
    _problem(operations["events_list"].sync_detailed(client=as_customer), 403, "permission_denied")

    # 404: an absent id; a refund the webhook's merchant does not have.
    _problem(operations["plans_retrieve"].sync_detailed(999_999, client=as_customer), 404, "not_found")
    absent = models.RefundStatusInRequest(refund_id="err-absent", status=models.RefundWebhookStatusEnum.APPROVED)
    sent = httpx.Request("POST", live_server.url, json=absent.to_dict()).content
    with api.Client(base_url=live_server.url) as anonymous:
        unknown = operations["refund_status_webhook"].sync_detailed(
            client=anonymous,
            body=absent,
            bnpl_merchant=merchant.user_id,
            bnpl_signature=signature_header("whsec_errors", int(time.time()), sent),
        )
    _problem(unknown, 404, "not_found")

    # 409: deciding a decided refund.
    approved = operations["refunds_approve"].sync_detailed(refund.parsed.id, client=as_operator)
    assert isinstance(approved.parsed, models.RefundOut), approved.content
    again = operations["refunds_approve"].sync_detailed(refund.parsed.id, client=as_operator)
    assert _problem(again, 409, "refund_already_decided").additional_properties["refund_status"] == "APPROVED"

    # 422: paying more than a plan owes.
    too_much = operations["plans_pay"].sync_detailed(
        plan.pk, client=as_customer, body=models.PlanPayInRequest(amount="999.00"), idempotency_key="err-pay-1"
    )
    _problem(too_much, 422, "overpayment")

    # 402: a declined card; 502: a gateway that does not answer (plans_pay here).
    refused = operations["plans_pay"].sync_detailed(
        declined_plan.pk, client=as_declined, body=models.PlanPayInRequest(amount="100.00"), idempotency_key="err-pay-2"
    )
    _problem(refused, 402, "payment_declined")
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.TimeoutGateway"
    timed_out = operations["plans_pay"].sync_detailed(
        plan.pk, client=as_customer, body=models.PlanPayInRequest(amount="100.00"), idempotency_key="err-pay-3"
    )
    _problem(timed_out, 502, "gateway_unavailable")

    for client in (as_merchant, as_customer, as_declined, as_operator):
        client.get_httpx_client().close()
