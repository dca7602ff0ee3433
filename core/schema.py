"""OpenAPI pieces shared by every app: the problem-details schema and response helpers."""

import copy
import inspect

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from core.problems import PROBLEM_CONTENT_TYPE

_DESCRIPTIONS = {
    400: "Invalid input (`validation_error`, with `errors` per field) or a malformed body.",
    401: "Not authenticated, or the token is invalid or expired.",
    402: "The payment was declined.",
    403: "Authenticated, but this role or status may not do this.",
    404: "No such object, or it is outside your scope.",
    409: "Conflicts with the current state.",
    413: "The request body is larger than 1 MiB.",
    415: "The body is not `application/json`.",
    422: "Well-formed, but a business rule refuses it.",
    429: "Too many requests; see `Retry-After`.",
    503: "A dependency is down.",
}


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text="URI reference naming the problem type.")
    title = serializers.CharField(help_text="Short human summary of the problem type.")
    status = serializers.IntegerField(help_text="The HTTP status code.")
    detail = serializers.CharField(help_text="Human explanation of this occurrence.")
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `debt_user_forbidden`.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, for validation errors.",
    )

    class Meta:
        ref_name = "Problem"


VALIDATION_EXAMPLE = OpenApiExample(
    "Validation error",
    value={
        "type": "/problems/validation_error",
        "title": "Invalid request",
        "status": 400,
        "detail": "Invalid input: phone_number.",
        "code": "validation_error",
        "errors": {
            "phone_number": ['Enter a phone number in E.164 format: "+", the country code and 7 to 14 more digits.']
        },
    },
    status_codes=["400"],
    response_only=True,
)


class StrictSerializerExtension(OpenApiSerializerExtension):
    """A StrictSerializer's request body says ``additionalProperties: false``: it refuses the
    fields it does not declare (core.serializers)."""

    target_class = "core.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction != "request":
            return schema
        # The description is the body's own docstring, not the one it would inherit from
        # StrictSerializer (written for this code's readers), and says what is refused.
        own = vars(type(self.target)).get("__doc__")
        refused = "Fields other than these are refused: 400 `validation_error` naming each (`Unknown field.`)."
        schema["description"] = f"{inspect.cleandoc(own)}\n\n{refused}" if own else refused
        schema["additionalProperties"] = False
        return schema


def problems(*statuses: int) -> dict:
    """``responses=`` entries for the given error statuses, as problem+json."""
    return {
        (status, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=_DESCRIPTIONS[status])
        for status in statuses
    }


def list_retrieve_schema(*, name: str, plural: str, serializer, example: dict):
    """``extend_schema_view`` for a read-only resource: the paginated list and the detail,
    with an example each and the problems they can answer."""
    page = {"count": 1, "next": None, "previous": None, "results": [example]}
    return extend_schema_view(
        list=extend_schema(
            operation_id=f"{name}_list",
            summary=f"{plural} in your scope",
            responses={200: serializer(many=True), **problems(400, 401, 404)},
            examples=[OpenApiExample("Page", value=page, response_only=True)],
        ),
        retrieve=extend_schema(
            operation_id=f"{name}_retrieve",
            summary=f"One of the {plural.lower()} in your scope",
            responses={200: serializer, **problems(401, 404)},
            examples=[OpenApiExample("One", value=example, response_only=True)],
        ),
    )


def add_throttled_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every operation may answer 429 (core/throttling.py throttles
    every API view), documented once here rather than in each view's ``responses``."""
    throttled = {
        "description": _DESCRIPTIONS[429],
        "headers": {
            "Retry-After": {
                "schema": {"type": "integer", "minimum": 1},
                "description": "Seconds until the limit's window ends.",
            }
        },
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("429", copy.deepcopy(throttled))
    return result
