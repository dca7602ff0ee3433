"""`python manage.py settle_merchants [--date YYYY-MM-DD]`: settle the merchants for a
business day (yesterday by default), now."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from settlements.services.settle import settle_merchants


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(f"--date: {text!r} is not a date (YYYY-MM-DD)") from error


class Command(BaseCommand):
    help = "Settle everything posted and not settled up to the business day (yesterday by default), and pay out."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--date", type=str, help="The business day to settle up to (YYYY-MM-DD).")

    def handle(self, *args, **options) -> None:
        day = _day(options["date"]) if options["date"] else None
        try:
            run = settle_merchants(day=day)
        except ValueError as error:
            raise CommandError(f"--date: {error}") from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Settled {run.business_date}: {run.settlements_created} settlements, "
                f"{run.payouts_created} payouts, {run.chunks_total} chunks."
            )
        )
