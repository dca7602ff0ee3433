from django.apps import AppConfig


class SettlementsConfig(AppConfig):
    name = "settlements"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ledger.checks import register
        from settlements.checks import payable_matches_settlements, payouts_within_settled

        register(payable_matches_settlements)
        register(payouts_within_settled)
