"""`python manage.py sweep_overdue`: run the overdue sweep once, now."""

from django.core.management.base import BaseCommand

from bnpl.services.sweep import overdue_sweep


class Command(BaseCommand):
    help = "Mark past-due installments OVERDUE and their customers DEBT_USER (and charge late fees if on)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--late-fees", action="store_true", help="Charge late fees even if the setting is off.")

    def handle(self, *args, **options) -> None:
        run = overdue_sweep(late_fees=True if options["late_fees"] else None)
        if run.skipped:
            self.stdout.write("Another sweep is running; skipped.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Sweep done in {run.duration_ms} ms: {run.installments_marked_overdue} installments overdue, "
                f"{run.customers_marked_debt} customers in debt, {run.customers_restored} restored, "
                f"{run.late_fees_created} late fees."
            )
        )
