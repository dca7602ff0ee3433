from django.apps import AppConfig


class RefundsConfig(AppConfig):
    name = "refunds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payments.checks import register_check
        from refunds.checks import over_refunded_plans

        register_check(over_refunded_plans)
