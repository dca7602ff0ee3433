"""`python manage.py check_ledger`: verify the ledger invariants; exit 1 with a report on any breach."""

from django.core.management.base import BaseCommand

from ledger.checks import ledger_check


class Command(BaseCommand):
    help = "Verify the ledger invariants: balanced entries, receivable = unpaid installments + fees, no overpayment."

    def handle(self, *args, **options) -> None:
        report = ledger_check()
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"Ledger OK: {report.plans_checked} plans checked, no breach."))
            return
        self.stderr.write(self.style.ERROR(f"Ledger check FAILED: {len(report.breaches)} breach(es)"))
        for breach in report.breaches:
            self.stderr.write(f"  - {breach}")
        raise SystemExit(1)
