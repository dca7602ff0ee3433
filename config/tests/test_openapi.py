import re

import pytest
from django.core.management import call_command

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
