from django.apps import AppConfig


class RefundsConfig(AppConfig):
    name = "refunds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ledger.checks import register
        from refunds.checks import gateway_clearing_matches, over_refunded_plans, paid_back_within_received

        register(over_refunded_plans)
        register(paid_back_within_received)
        register(gateway_clearing_matches)
