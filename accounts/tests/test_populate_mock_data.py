import pytest
from django.core.management import call_command

from accounts.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_development(settings):
    settings.DEBUG = True  # pytest-django runs with DEBUG off; demo data is for local use


def test_populate_mock_data_is_idempotent_and_makes_the_documented_users(api_client):
    call_command("populate_mock_data")
    snapshot = sorted(User.objects.values_list("user_id", "role", "status", "credit_limit", "card_last4"))
    call_command("populate_mock_data")

    assert sorted(User.objects.values_list("user_id", "role", "status", "credit_limit", "card_last4")) == snapshot
    usr = User.objects.get(user_id="usr-001")
    assert (usr.role, usr.status, str(usr.credit_limit)) == ("CUSTOMER", "NORMAL", "10000.00")
    assert (usr.phone_number, usr.passport_number, usr.masked_card) == (
        "+998901234567",
        "AA1234567",
        "4111 **** **** 1111",
    )
    assert User.objects.get(user_id="debt-user-001").status == User.Status.DEBT_USER
    assert User.objects.get(user_id="merchant-001").role == User.Role.MERCHANT
    admin = User.objects.get(username="admin")
    assert admin.role == User.Role.OPERATOR
    assert admin.is_staff
    assert admin.is_superuser


@pytest.mark.parametrize(("username", "password"), [("admin", "admin123"), ("usr-001", "demo12345")])
def test_demo_users_can_log_in(api_client, username, password):
    call_command("populate_mock_data")

    response = api_client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")

    assert response.status_code == 200
    assert "access" in response.json()
