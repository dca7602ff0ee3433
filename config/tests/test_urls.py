"""The URL map: the API's patterns are ordered by traffic (config/urls.py), which is safe
only while no path matches two of them."""

import re

from django.urls import URLPattern, URLResolver, get_resolver, resolve

# A value for each path parameter the API takes, of the shape its pattern accepts.
SAMPLES = {"pk": "7", "user_id": "cust-7", "id": "evt_0a1b"}


def _api_patterns() -> list[URLPattern]:
    api = next(p for p in get_resolver("config.urls").url_patterns if str(p.pattern) == "api/v1/")
    assert isinstance(api, URLResolver)
    return list(api.url_patterns)


def _sample_path(pattern: URLPattern) -> str:
    """A path of ``pattern``'s own shape, each parameter given its sample value."""
    route = str(pattern.pattern).removeprefix("^").removesuffix("$")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: SAMPLES[m.group(1)], route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLES[m.group(1)], route)
    return "/api/v1/" + route


def test_every_api_path_reaches_its_own_view_whatever_the_order():
    patterns = _api_patterns()
    assert len(patterns) > 30
    for pattern in patterns:
        path = _sample_path(pattern)
        assert resolve(path, "config.urls").url_name == pattern.name, path
        hiding = [other.name for other in patterns if other is not pattern and other.resolve(path[len("/api/v1/") :])]
        assert hiding == [], f"{path} also matches {hiding}"
