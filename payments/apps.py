from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.profile import register_profile_field
        from ledger.checks import register
        from ledger.selectors import credit_balances
        from payments.checks import (
            no_negative_credit_balance,
            paid_amounts_match_payments,
            reservations_match_pending_payments,
        )

        register_profile_field("credit_balance", lambda user: credit_balances(customer_id=user.pk))
        register(no_negative_credit_balance)
        register(reservations_match_pending_payments)
        register(paid_amounts_match_payments)
