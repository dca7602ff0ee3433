"""Two sign-ups with one name at the same moment: exactly one wins, the other is a clean 409."""

import threading

import pytest
from django.db import connections

from accounts.models import User
from conftest import PiiCheckingClient

BODY = {
    "password": "s3cure-pass-phrase",
    "role": "CUSTOMER",
    "full_name": "Race Runner",
    "phone_number": "+998901112233",
    "email": "race@example.com",
}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("names", [["racer"] * 8, ["racer", "RACER", "Racer", "rAcEr"] * 2])
def test_concurrent_registrations_with_one_username_create_one_user(names):
    barrier = threading.Barrier(len(names))
    statuses: list[int] = []

    def register(name: str) -> None:
        try:
            barrier.wait()
            response = PiiCheckingClient().post("/api/v1/auth/register/", {**BODY, "username": name}, format="json")
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201] + [409] * (len(names) - 1)
    assert User.objects.filter(username__iexact="racer").count() == 1
