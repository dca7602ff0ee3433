import json

import pytest
from django.core.cache import cache
from rest_framework import exceptions

from core.problems import flatten_errors

pytestmark = [pytest.mark.django_db, pytest.mark.urls("core.tests.urls_errors")]


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"] == f"/problems/{body['code']}"
    assert body["title"]
    assert body["detail"]
    return body


def test_unknown_url_is_404_problem(api_client):
    assert problem(api_client.get("/api/v1/nothing-here/"), 404)["code"] == "not_found"
    assert problem(api_client.get("/no/such/page"), 404)["code"] == "not_found"


def test_wrong_method_on_a_plain_view_is_405_problem_with_allow(api_client):
    response = api_client.post("/healthz")
    assert problem(response, 405)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET"


def test_wrong_method_on_an_api_view_is_405_problem(as_user, customer):
    response = as_user(customer).delete("/api/v1/auth/me/")
    assert problem(response, 405)["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


def test_not_acceptable_is_406_problem(as_user, customer):
    response = as_user(customer).get("/api/v1/auth/me/", HTTP_ACCEPT="application/xml")
    assert problem(response, 406)["code"] == "not_acceptable"


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000])
def test_json_nested_too_deeply_is_400_parse_error(api_client, body):
    # The decoder gives up with RecursionError, which DRF's parser lets through (a 500).
    response = api_client.post("/api/v1/auth/token/", data=body, content_type="application/json")
    assert problem(response, 400)["code"] == "parse_error"


def test_unhandled_error_is_500_problem_and_logged_masked(api_client, log_lines):
    body = problem(api_client.get("/t/crash/"), 500)

    assert body["code"] == "server_error"
    assert "4111" not in body["detail"]  # internals never reach the client
    logged = "\n".join(log_lines())
    assert "RuntimeError" in logged
    assert "4111 **** **** 1111" in logged
    assert "4111111111111111" not in logged


def test_unhandled_error_in_a_plain_django_view_is_500_problem(api_client):
    assert problem(api_client.get("/t/plain-crash/"), 500)["code"] == "server_error"


def test_domain_error_carries_status_code_and_extras(api_client):
    body = problem(api_client.get("/t/domain/"), 422)
    assert body["code"] == "boom_refused"
    assert body["title"] == "Boom refused"
    assert body["detail"] == "Not today."
    assert body["limit"] == "10.00"


def test_database_unavailable_is_503_problem(api_client):
    """Simulated: the view raises OperationalError (not counted as an injected fault)."""
    response = api_client.get("/t/db-down/")
    assert problem(response, 503)["code"] == "service_unavailable"
    assert response["Retry-After"] == "5"


def test_a_plain_django_view_that_loses_the_database_is_503_problem_not_500(api_client):
    """Simulated: the view raises InterfaceError (not counted as an injected fault)."""
    # The refund webhook is a plain Django view: a database that is down must not be a 500.
    response = api_client.get("/t/plain-db-gone/")
    assert problem(response, 503)["code"] == "service_unavailable"
    assert response["Retry-After"] == "5"


def test_throttled_is_429_problem_with_retry_after(api_client):
    cache.clear()
    assert api_client.get("/t/throttled/").status_code == 200
    response = api_client.get("/t/throttled/")
    body = problem(response, 429)
    assert body["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    assert body["retry_after"] == int(response["Retry-After"])
    cache.clear()


def test_flatten_errors_names_nested_fields():
    detail = exceptions.ValidationError(
        {"amount": ["Too big."], "items": [{"sku": ["Required."]}, {}], "non_field_errors": ["Bad."]}
    ).detail
    assert flatten_errors(detail) == {
        "amount": ["Too big."],
        "items.0.sku": ["Required."],
        "non_field_errors": ["Bad."],
    }
    assert flatten_errors(exceptions.ValidationError(["Whole body is wrong."]).detail) == {
        "non_field_errors": ["Whole body is wrong."]
    }


def test_request_id_is_echoed_when_safe_and_generated_otherwise(api_client, log_lines):
    given = api_client.get("/healthz", HTTP_X_REQUEST_ID="req-abc.123")
    assert given["X-Request-ID"] == "req-abc.123"
    assert any('"request_id": "req-abc.123"' in line for line in log_lines())

    unsafe = api_client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert unsafe["X-Request-ID"] != "bad id\nwith newline"
    assert len(unsafe["X-Request-ID"]) == 32

    assert len(api_client.get("/healthz")["X-Request-ID"]) == 32


def test_log_lines_are_json_with_request_id(api_client, log_lines):
    api_client.get("/healthz", HTTP_X_REQUEST_ID="req-json-1")
    entries = [json.loads(line) for line in log_lines()]
    access = [e for e in entries if e["logger"] == "bnpl.request"]
    assert access
    assert access[0]["request_id"] == "req-json-1"
    assert access[0]["status"] == 200
    assert {"time", "level", "message"} <= access[0].keys()
