"""Demo data for local use: idempotent and deterministic; refused when DEBUG is off."""

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from accounts.services import user_register

DEMO_PASSWORD = "demo12345"
OPERATOR_USERNAME = "admin"
OPERATOR_PASSWORD = "admin123"

DEMO_USERS = [
    {
        "user_id": "usr-001",
        "role": User.Role.CUSTOMER,
        "full_name": "Aziz Karimov",
        "phone_number": "+998901234567",
        "email": "usr-001@example.com",
        "passport_number": "AA1234567",
        "card_number": "4111111111111111",
        "credit_limit": Decimal("10000.00"),
    },
    {
        "user_id": "debt-user-001",
        "role": User.Role.CUSTOMER,
        "full_name": "Dilnoza Rahimova",
        "phone_number": "+998907654321",
        "email": "debt-user-001@example.com",
        "passport_number": "AB7654321",
        "card_number": "4242424242424242",
        "status": User.Status.DEBT_USER,
    },
    {
        "user_id": "merchant-001",
        "role": User.Role.MERCHANT,
        "full_name": "Demo Electronics LLC",
        "phone_number": "+998712000001",
        "email": "merchant-001@example.com",
    },
]


class Command(BaseCommand):
    help = "Create the demo users of the README (local development only; refused when DEBUG=False)."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("populate_mock_data creates well-known passwords; it is refused when DEBUG=False.")
        with transaction.atomic():
            created = [spec["user_id"] for spec in DEMO_USERS if self._ensure_user(spec)]
            if self._ensure_operator():
                created.append(OPERATOR_USERNAME)
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created: {', '.join(created)}"))
        else:
            self.stdout.write("Demo data already present; nothing changed.")

    @staticmethod
    def _ensure_user(spec: dict) -> bool:
        if User.objects.filter(user_id=spec["user_id"]).exists():
            return False
        fields = {k: v for k, v in spec.items() if k not in ("credit_limit", "status")}
        user = user_register(username=spec["user_id"], password=DEMO_PASSWORD, **fields)
        # Demo-only attributes a customer cannot register with; the overdue plan that
        # explains debt-user-001's status arrives with the plans.
        User.objects.filter(pk=user.pk).update(
            credit_limit=spec.get("credit_limit", user.credit_limit), status=spec.get("status", user.status)
        )
        return True

    @staticmethod
    def _ensure_operator() -> bool:
        if User.objects.filter(username=OPERATOR_USERNAME).exists():
            return False
        User.objects.create_superuser(
            OPERATOR_USERNAME,
            "admin@example.com",
            OPERATOR_PASSWORD,
            user_id="admin",
            full_name="Platform Operator",
        )
        return True
