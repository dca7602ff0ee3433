import re
from datetime import timedelta

import pytest
from django.core.management import call_command

from bnpl.models import Plan
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
    # The CSP nonce is random letters and digits: it may spell "cdn" by chance.
    assert "cdn" not in re.sub(r'nonce="[^"]*"', "", html).lower()


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


# --- What a generated client needs (issue 22) -------------------------------------------------

PAY_OPERATIONS = [("post", "/api/v1/installments/{id}/pay/"), ("post", "/api/v1/plans/{id}/pay/")]
ANONYMOUS_OPERATIONS = [
    ("post", "/api/v1/auth/register/"),
    ("post", "/api/v1/auth/token/"),
    ("post", "/api/v1/auth/token/refresh/"),
    ("post", "/api/v1/auth/logout/"),
    ("post", "/webhook/refund-status/"),
]
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def test_every_operation_documents_503_service_unavailable_as_a_problem(schema):
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in _operations(schema)
        if operation["responses"].get("503", {}).get("content", {}).get("application/problem+json", {}).get("schema")
        != PROBLEM_REF
    ]
    assert missing == []


@pytest.mark.parametrize(("method", "path"), PAY_OPERATIONS)
def test_the_pay_operations_document_502_gateway_unavailable_as_a_problem(schema, method, path):
    answer = schema["paths"][path][method]["responses"]["502"]
    content = answer["content"]["application/problem+json"]

    assert content["schema"] == PROBLEM_REF
    assert "gateway_unavailable" in answer["description"]
    assert "same `Idempotency-Key`" in answer["description"]
    assert content["examples"]["GatewayUnavailable"]["value"]["code"] == "gateway_unavailable"


def test_only_the_pay_operations_document_502(schema):
    documented = {(method, path) for method, path, operation in _operations(schema) if "502" in operation["responses"]}
    assert documented == set(PAY_OPERATIONS)


def test_every_operation_taking_an_idempotency_key_declares_the_replay_header(schema):
    taking = 0
    for _method, path, operation in _operations(schema):
        keys = [p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        if not keys:
            assert not any("Idempotent-Replayed" in r.get("headers", {}) for r in operation["responses"].values())
            continue
        taking += 1
        assert keys[0]["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}, path
        responses = operation["responses"]
        # A key in flight (409) and a key sent before with another request (422) can meet any of them.
        assert {"409", "422"} <= set(responses), path
        success = next(status for status in responses if status.startswith("2"))
        assert responses[success]["headers"]["Idempotent-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}
        # Answers never stored are never replayed: refused before the work, throttled, down.
        for status in ("400", "401", "403", "404", "413", "415", "429", "503"):
            assert "Idempotent-Replayed" not in responses.get(status, {}).get("headers", {}), (path, status)
    assert taking == 10  # plans create, confirm, decline, capture, void, two pays, refund create, approve, reject


def test_a_replayed_answer_carries_the_declared_header(as_user, make_plan, operator):
    plan = make_plan()
    client = as_user(operator)
    body = {"amount": "10.00"}

    first = client.post(f"/api/v1/plans/{plan.pk}/pay/", body, format="json", HTTP_IDEMPOTENCY_KEY="replay-1")
    again = client.post(f"/api/v1/plans/{plan.pk}/pay/", body, format="json", HTTP_IDEMPOTENCY_KEY="replay-1")

    assert first.status_code == again.status_code == 201, again.content
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"


def test_debt_status_types_the_status_and_the_buckets(schema):
    components = schema["components"]["schemas"]
    debt = components["DebtStatusOut"]["properties"]
    in_one_currency = components[debt["by_currency"]["items"]["$ref"].rsplit("/", 1)[1]]["properties"]

    assert debt["user_status"] == {"$ref": "#/components/schemas/CustomerStatusEnum"}
    # The top level is one currency's figures, each null when there are several; one currency's never are.
    top = components[debt["overdue_by_bucket"]["allOf"][0]["$ref"].rsplit("/", 1)[1]]
    buckets = components[in_one_currency["overdue_by_bucket"]["$ref"].rsplit("/", 1)[1]]
    for schema_of, nullable in ((top, True), (buckets, False)):
        assert schema_of["type"] == "object"
        assert schema_of["required"] == ["1-30", "31-60", "61-90", "90+"]
        assert set(schema_of["properties"]) == {"1-30", "31-60", "61-90", "90+"}
        assert "additionalProperties" not in schema_of
        assert all(bool(p.get("nullable")) is nullable for p in schema_of["properties"].values())


def test_money_figures_are_nullable_only_where_several_currencies_may_leave_them_out(schema):
    """A top-level amount of a per-currency answer is null when there are several currencies;
    the amounts of one currency never are."""
    components = schema["components"]["schemas"]
    for answer, amounts in (
        ("DebtStatusOut", ("total_debt", "overdue_amount", "fees_due")),
        ("AnalyticsOut", ("total_revenue", "outstanding", "overdue_amount", "refunds_total")),
    ):
        top = components[answer]["properties"]
        per_currency = components[top["by_currency"]["items"]["$ref"].rsplit("/", 1)[1]]
        assert top["currency"]["nullable"] is True, answer
        for name in amounts:
            assert top[name]["nullable"] is True, (answer, name)
            assert "nullable" not in per_currency["properties"][name], (answer, name)
            assert name in per_currency["required"], (answer, name)
    statuses = components["AnalyticsOut"]["properties"]["plans_by_status"]["$ref"].rsplit("/", 1)[1]
    assert set(components[statuses]["required"]) == set(Plan.Status.values)
    positions = components["SpendingPowerOut"]["properties"]["by_currency"]["items"]["$ref"].rsplit("/", 1)[1]
    assert set(components[positions]["required"]) == {
        "currency",
        "credit_limit",
        "outstanding",
        "reserved",
        "available",
    }


def test_debt_status_answers_every_bucket(as_user, make_plan, operator):
    plan = make_plan(purchase_date=business_today() - timedelta(days=75))
    overdue_sweep()

    answer = as_user(operator).get(f"/api/v1/debt/{plan.customer.user_id}/")

    assert answer.status_code == 200, answer.content
    assert list(answer.json()["overdue_by_bucket"]) == ["1-30", "31-60", "61-90", "90+"]
    assert list(answer.json()["by_currency"][0]["overdue_by_bucket"]) == ["1-30", "31-60", "61-90", "90+"]
    assert answer.json()["user_status"] in {"NORMAL", "DEBT_USER"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("0.01", True),
        ("0.1", True),
        ("0.10", True),
        ("1", True),
        ("166.67", True),
        ("9999999999.99", True),
        ("0", False),
        ("0.0", False),
        ("0.00", False),
        ("-1.00", False),
        ("-0.01", False),
        ("1.005", False),
        ("+1.00", False),
        ("12345678901", False),
    ],
)
def test_request_amounts_in_the_schema_are_positive_only(schema, text, matches):
    pattern = schema["components"]["schemas"]["PlanPayInRequest"]["properties"]["amount"]["pattern"]

    assert bool(re.fullmatch(pattern, text)) is matches


def test_response_amounts_may_be_zero(schema):
    pattern = schema["components"]["schemas"]["PaymentOut"]["properties"]["credit_amount"]["pattern"]

    assert re.fullmatch(pattern, "0.00")


@pytest.mark.parametrize(("method", "path"), ANONYMOUS_OPERATIONS)
def test_operations_that_read_no_jwt_say_security_empty(schema, method, path):
    assert schema["paths"][path][method]["security"] == []


def test_operations_that_read_a_jwt_require_it(schema):
    anonymous = {(method, path) for method, path in ANONYMOUS_OPERATIONS}
    for method, path, operation in _operations(schema):
        if (method, path) not in anonymous:
            assert operation["security"] == [{"jwtAuth": []}, {"cookieAuth": []}], (method, path)


def test_list_examples_are_one_page_not_a_page_in_a_page(schema):
    lists = 0
    for _method, path, operation in _operations(schema):
        example = (
            operation["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("examples", {})
        )
        if "Page" not in example:
            continue
        lists += 1
        page = example["Page"]["value"]
        assert set(page) <= {"count", "next", "previous", "results"}, path
        assert len(page["results"]) == 1, path
        assert not {"count", "next", "previous", "results"} & set(page["results"][0]), path
        assert '"' not in str(page.get("next")), path
    # plans, installments, late fees, payments, credit movements, refunds, events, users, settlements, payouts
    assert lists == 10


def test_refund_examples_carry_the_payout_method(schema):
    refunds = schema["paths"]["/api/v1/refunds/"]
    examples = [
        refunds["get"]["responses"]["200"]["content"]["application/json"]["examples"]["Page"]["value"]["results"][0],
        refunds["post"]["responses"]["201"]["content"]["application/json"]["examples"]["Created"]["value"],
    ]
    for example in examples:
        assert example["payout_method"] in {"CARD", "CREDIT"}


def test_problem_examples_attach_to_the_problem_media_type(schema):
    pay = schema["paths"]["/api/v1/plans/{id}/pay/"]["post"]["responses"]
    create = schema["paths"]["/api/v1/plans/"]["post"]["responses"]

    assert "Declined" in pay["402"]["content"]["application/problem+json"]["examples"]
    assert "DebtUser" in create["403"]["content"]["application/problem+json"]["examples"]
    assert "ValidationError" in create["400"]["content"]["application/problem+json"]["examples"]
    assert schema["components"]["schemas"]["Problem"]["additionalProperties"] is True


def test_the_schema_names_its_server_and_license(schema):
    assert schema["servers"] == [{"url": "/", "description": "The host serving this schema"}]
    assert schema["info"]["license"]["name"]
    assert schema["info"]["license"]["url"]
