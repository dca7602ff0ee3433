"""The remembered content negotiation answers what DRF's own answers, every time."""

import pytest
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from core import negotiation
from core.negotiation import RememberedContentNegotiation

HEADERS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "text/html, application/json;q=0.9",
    "application/*",
    "text/html",
    "image/png",
    "",
]


@pytest.fixture(autouse=True)
def _forgotten(monkeypatch):
    monkeypatch.setattr(negotiation, "_ANSWERS", {})


def _answer(conneg, accept, renderers, query="") -> tuple:
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(f"/x/{query}", **extra))
    offered = [renderer() for renderer in renderers]
    try:
        renderer, media_type = conneg.select_renderer(request, offered)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return offered.index(renderer), type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", [[JSONRenderer], [JSONRenderer, BrowsableAPIRenderer]], ids=["json", "both"])
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?format=xml"])
def test_every_answer_and_refusal_is_drfs_first_time_and_after(renderers, query):
    for _ in range(2):  # the second time from what was remembered
        for accept in HEADERS:
            expected = _answer(DefaultContentNegotiation(), accept, renderers, query)
            assert _answer(RememberedContentNegotiation(), accept, renderers, query) == expected, (accept, query)


def test_a_refusal_is_not_remembered_and_long_headers_are_not_kept():
    with pytest.raises(NotAcceptable):
        RememberedContentNegotiation().select_renderer(
            Request(APIRequestFactory().get("/x/", HTTP_ACCEPT="image/png")), [JSONRenderer()]
        )
    long = "application/json, " + ", ".join(f"text/x-{n}" for n in range(40))
    assert _answer(RememberedContentNegotiation(), long, [JSONRenderer]) == (0, "JSONRenderer", "application/json")
    assert _answer(RememberedContentNegotiation(), "*/*", [JSONRenderer]) == (0, "JSONRenderer", "application/json")
    assert [key[0] for key in negotiation._ANSWERS] == ["*/*"]
