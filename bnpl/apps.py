from django.apps import AppConfig


class BnplConfig(AppConfig):
    name = "bnpl"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bnpl.checks import (
            fees_paid_or_waived,
            no_overpaid_installment,
            nothing_owed_without_consent,
            receivable_matches_plans,
        )
        from ledger.checks import register

        register(receivable_matches_plans)
        register(no_overpaid_installment)
        register(fees_paid_or_waived)
        register(nothing_owed_without_consent)
