from django.apps import AppConfig


class BnplConfig(AppConfig):
    name = "bnpl"
    default_auto_field = "django.db.models.BigAutoField"
