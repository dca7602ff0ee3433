import re
from datetime import timedelta

import pytest
from django.core.management import call_command

from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep

pytestmark = pytest.mark.django_db

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def assets_of(html: str) -> list[str]:
    return [url for url in ASSET.findall(html) if not url.startswith(("#", "data:"))]


@pytest.mark.parametrize("page", ["/swagger/", "/redoc/"])
def test_api_ui_renders_from_local_assets_only(api_client, page):
    response = api_client.get(page)

    assert response.status_code == 200
    html = response.content.decode()
    urls = assets_of(html)
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        assert url.startswith("/"), f"{page} references a remote asset: {url}"
        asset = api_client.get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert body, url
    assert "cdn" not in html.lower()


def test_schema_lists_every_endpoint_with_problem_responses(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in (
        "/api/v1/auth/register/",
        "/api/v1/auth/token/",
        "/api/v1/auth/token/refresh/",
        "/api/v1/auth/me/",
        "/api/v1/users/",
        "/api/v1/users/{user_id}/",
    ):
        assert path in paths, path
    register = paths["/api/v1/auth/register/"]["post"]
    assert "application/problem+json" in register["responses"]["400"]["content"]
    assert register["requestBody"]["content"]["application/json"]["examples"]
    assert "Problem" in schema["components"]["schemas"]
    assert "jwtAuth" in schema["components"]["securitySchemes"]


def test_schema_is_valid_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3")


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


@pytest.fixture
def schema(api_client) -> dict:
    return api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def test_every_operation_with_a_body_documents_the_answers_to_a_bad_body(schema):
    # 400 malformed JSON or a bad field, 413 over the body limit (any request, by the
    # middleware), 415 not JSON; the signed webhook reads its raw body whatever its type.
    undocumented = {}
    for method, path, operation in _operations(schema):
        if "requestBody" not in operation:
            continue
        expected = {"400", "413"} if path == "/webhook/refund-status/" else {"400", "413", "415"}
        missing = expected - set(operation["responses"])
        if missing:
            undocumented[f"{method.upper()} {path}"] = sorted(missing)
    assert undocumented == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/refunds/"),
        ("post", "/api/v1/plans/{id}/pay/"),
        ("post", "/api/v1/installments/{id}/pay/"),
        ("post", "/api/v1/late-fees/{id}/waive/"),
        ("patch", "/api/v1/auth/me/"),
    ],
)
def test_a_body_that_is_not_json_gets_a_documented_415(schema, as_user, make_plan, operator, method, path):
    plan = make_plan(purchase_date=business_today() - timedelta(days=75))
    overdue_sweep(late_fees=True)
    ids = {"/plans/": plan.pk, "/installments/": plan.installments.first().pk, "/late-fees/": plan.late_fees.first().pk}
    url = path
    for prefix, pk in ids.items():
        if prefix in path:
            url = path.replace("{id}", str(pk))

    response = getattr(as_user(operator), method)(url, data="amount=1", content_type="text/plain")

    assert response.status_code == 415, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert "415" in schema["paths"][path][method]["responses"]


def test_the_signed_webhook_is_documented(schema):
    operation = schema["paths"]["/webhook/refund-status/"]["post"]

    assert operation["operationId"] == "refund_status_webhook"
    assert {(p["in"], p["name"], p["required"]) for p in operation["parameters"]} == {
        ("header", "BNPL-Merchant", True),
        ("header", "BNPL-Signature", True),
    }
    assert {"200", "400", "401", "404", "413", "422"} <= set(operation["responses"])
    assert "application/problem+json" in operation["responses"]["401"]["content"]
    assert operation.get("security", []) in ([], [{}])  # no JWT: the signature authenticates
