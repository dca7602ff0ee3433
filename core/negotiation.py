"""Content negotiation: DRF's rules, each answer remembered.

Every request negotiates its renderer from its ``Accept`` header (and a ``?format=``). The
same few headers arrive again and again, and parsing and ranking them anew cost about 1 % of
a write's time. The answer depends only on the header, the format and the view's renderer
classes, so it is kept per process for those; a refusal (406, or 404 for an unknown format)
is not kept and is raised again each time. Only short headers are kept, and at most a
thousand: a client sending ever new ones fills no memory, it only negotiates every time.
"""

from rest_framework.negotiation import DefaultContentNegotiation

# (Accept, format, renderer classes) -> (the renderer's place among them, the media type).
_ANSWERS: dict[tuple, tuple[int, str]] = {}
_KEPT_AT_MOST = 1000  # distinct headers kept; past it, new ones are negotiated every time
_KEPT_LENGTH = 256  # characters of the longest header kept


class RememberedContentNegotiation(DefaultContentNegotiation):
    """DefaultContentNegotiation, its answer for the same header, format and renderers remembered."""

    def select_renderer(self, request, renderers, format_suffix=None):
        wanted = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (request.META.get("HTTP_ACCEPT", "*/*"), wanted, tuple(type(renderer) for renderer in renderers))
        known = _ANSWERS.get(key)
        if known is not None:
            return renderers[known[0]], known[1]
        renderer, media_type = super().select_renderer(request, renderers, format_suffix)
        if len(_ANSWERS) < _KEPT_AT_MOST and len(key[0]) <= _KEPT_LENGTH and len(wanted or "") <= _KEPT_LENGTH:
            _ANSWERS[key] = (next(i for i, offered in enumerate(renderers) if offered is renderer), media_type)
        return renderer, media_type
