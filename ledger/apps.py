from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from ledger import checks  # noqa: F401 - registers the ledger's own check first
        from ledger.accounts import ledger_chart_ensure

        post_migrate.connect(ledger_chart_ensure, sender=self, dispatch_uid="ledger.ledger_chart_ensure")
