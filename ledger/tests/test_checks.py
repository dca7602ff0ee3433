"""The ledger's check runner: each app registers its own checks; check_ledger and the
periodic task go through them all. And the ledger's Python imports none of those apps."""

import ast
from pathlib import Path

import pytest
from django.core.management import call_command

from ledger import checks
from ledger.checks import ledger_check, register, registered
from ledger.models import LedgerCheckRun
from ledger.tasks import ledger_check_task

pytestmark = pytest.mark.django_db

LEDGER = Path(checks.__file__).resolve().parent


def test_every_app_registers_its_checks_with_the_runner():
    assert registered() == [
        "ledger.balanced_entries",
        "bnpl.checks.receivable_matches_plans",
        "bnpl.checks.no_overpaid_installment",
        "bnpl.checks.fees_paid_or_waived",
        "bnpl.checks.nothing_owed_without_consent",
        "payments.checks.no_negative_credit_balance",
        "payments.checks.reservations_match_pending_payments",
        "payments.checks.paid_amounts_match_payments",
        "refunds.checks.over_refunded_plans",
        "refunds.checks.paid_back_within_received",
        "refunds.checks.gateway_clearing_matches",
        "settlements.checks.payable_matches_settlements",
        "settlements.checks.payouts_within_settled",
    ]


def test_a_registered_check_is_run_by_the_command_and_the_task(monkeypatch, capsys):
    with monkeypatch.context() as patch:
        patch.setattr(checks, "_checks", dict(checks._checks))
        register(lambda report: ["something is off"], name="test.always_off")

        with pytest.raises(SystemExit) as exited:
            call_command("check_ledger")
        assert exited.value.code == 1
        assert "something is off" in capsys.readouterr().err

        assert ledger_check_task.apply().get() == {"ok": False, "breaches": 1}
        assert LedgerCheckRun.objects.order_by("-id").first().breaches == ["something is off"]
        assert not ledger_check(record=False).ok
    assert ledger_check(record=False).ok


def test_registering_again_replaces_the_check(monkeypatch):
    def once(report):
        return ["once"]

    with monkeypatch.context() as patch:  # undone before the after-test ledger check
        patch.setattr(checks, "_checks", dict(checks._checks))
        register(once)
        register(once)

        assert ledger_check(record=False).breaches == ["once"]


def test_the_ledger_imports_none_of_the_business_apps():
    forbidden = {"accounts", "bnpl", "events", "payments", "refunds", "settlements"}
    found = []
    for path in LEDGER.rglob("*.py"):
        if {"tests", "migrations"} & set(path.relative_to(LEDGER).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in forbidden]
    assert found == []
