"""The JSON request parser every API view uses."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a document nested deeper than the decoder can follow (a few
    kilobytes of ``[``) refused as malformed: 400 ``parse_error``, like any other bad body.

    DRF turns the decoder's ``ValueError`` into a ``ParseError`` but lets its
    ``RecursionError`` through, which would answer 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc
