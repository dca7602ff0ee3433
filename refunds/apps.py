from django.apps import AppConfig


class RefundsConfig(AppConfig):
    name = "refunds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ledger.checks import register
        from refunds.checks import over_refunded_plans

        register(over_refunded_plans)
