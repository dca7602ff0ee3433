from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from accounts.profile import register_profile_field
        from payments.ledger import credit_balances, ledger_chart_ensure

        post_migrate.connect(ledger_chart_ensure, sender=self, dispatch_uid="payments.ledger_chart_ensure")

        register_profile_field("credit_balance", lambda user: credit_balances(customer_id=user.pk))
