"""JSON request bodies: the parser every API view uses, and ``json_loads`` for a view that
reads its raw body itself (the signed refund webhook). One set of rules for both:

- the body is UTF-8 (RFC 8259): a ``Content-Type`` naming another charset is 415
  ``unsupported_media_type`` (ASCII, a subset, passes);
- a body that is not JSON, or is nested deeper than the decoder can follow, is 400
  ``parse_error``;
- every string in it, object keys included, is valid Unicode text: a lone surrogate (the
  escape ``"\\ud800"``) or bytes that are not UTF-8 inside a string are 400 ``invalid_text``
  naming where (``{"errors": {"items.0.name": [...]}}``). Such a string cannot be stored in
  PostgreSQL nor written back out as UTF-8, and answering it (an error message that echoes
  the choice it got) was a 500.
"""

import codecs
import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.utils.json import strict_constant


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(key: str) -> str:
    # A key that is not text is named with its bad characters escaped: it cannot be written
    # out as it came.
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def invalid_text_paths(document: Any) -> list[str]:
    """The dotted paths (as in problem ``errors``: ``items.0.name``) of every string in
    ``document``, object keys included, that is not valid Unicode text; sorted, empty when
    all are. A bad key is named itself (escaped); the body as a whole is ``non_field_errors``."""
    bad = []
    # A stack, not recursion: the decoder took the document as deep as it could go.
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if not _is_text(node):
                bad.append(path or "non_field_errors")
        elif isinstance(node, dict):
            for key, value in node.items():
                child = f"{path}.{_name(key)}" if path else _name(key)
                if _is_text(key):
                    stack.append((child, value))
                else:
                    bad.append(child)
        elif isinstance(node, list):
            stack.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(node))
    return sorted(bad)


def json_loads(raw: bytes) -> Any:
    """The JSON document in ``raw``, all of whose strings are valid text.

    Raises ``ParseError`` (not JSON, nested too deeply) or ``InvalidText`` (naming the strings
    that hold a lone surrogate or bytes that are not UTF-8).
    """
    # Bytes that are not UTF-8 become lone surrogates (surrogateescape), so that inside a
    # string they are named like an escaped surrogate; anywhere else the decoder refuses them.
    text = raw.decode("utf-8", "surrogateescape")
    try:
        document = json.loads(text, parse_constant=strict_constant)
    except RecursionError as exc:
        # DRF lets the decoder's RecursionError through (a few kilobytes of "["): a 500.
        raise ParseError("JSON parse error - the document is nested too deeply.") from exc
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from exc
    bad = invalid_text_paths(document)
    if bad:
        # Imported here: core.problems imports DRF's views, which import this parser.
        from core.problems import InvalidText

        raise InvalidText(bad)
    return document


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, by ``json_loads``'s rules."""

    def parse(self, stream, media_type=None, parser_context=None):
        # Refused rather than decoded as declared: JSON is UTF-8 (RFC 8259 §8.1), and a body
        # read as latin-1 or utf-7 would be other text than the same bytes read as UTF-8.
        charset = (parser_context or {}).get("encoding") or "utf-8"
        try:
            utf8 = codecs.lookup(charset).name in ("utf-8", "ascii")
        except LookupError:
            utf8 = False
        if not utf8:
            raise UnsupportedMediaType(media_type, detail=f'JSON is UTF-8 only; charset "{charset}" is not accepted.')
        return json_loads(stream.read() if stream is not None else b"")
