"""OpenAPI pieces shared by every app: the problem-details schema and response helpers."""

import copy
import inspect
from http import HTTPStatus

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from core.idempotency import HEADER as IDEMPOTENCY_HEADER
from core.idempotency import NOT_STORED
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
    502: (
        "`gateway_unavailable`: the payment gateway did not answer. The payment stays PENDING and is "
        "never charged twice: retry with the same `Idempotency-Key`."
    ),
    503: "`service_unavailable`: a dependency (the database) is down; retry after `Retry-After` seconds.",
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
    media_type=PROBLEM_CONTENT_TYPE,  # examples attach to the answer of their media type only
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


class ProblemSerializerExtension(OpenApiSerializerExtension):
    """A problem may carry extension members (RFC 9457 §3.2) beside the standard ones, e.g.
    ``payment_id`` and ``decline_code`` on a 402, ``refund_status`` on a 409: the schema
    says ``additionalProperties: true`` so clients keep them and examples may show them."""

    target_class = ProblemSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = True
        return schema


def problems(*statuses: int) -> dict:
    """``responses=`` entries for the given error statuses, as problem+json."""
    return {
        (status, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=_DESCRIPTIONS[status])
        for status in statuses
    }


def list_retrieve_schema(*, name: str, plural: str, serializer, example: dict, roles_only: bool = False):
    """``extend_schema_view`` for a read-only resource: the paginated list and the detail,
    with an example each and the problems they can answer (``roles_only``: some roles may
    not read it at all, a 403).

    The list's example is one item: drf-spectacular wraps a list operation's example in
    the paginator's page itself (``count``, ``next``, ``previous``, ``results``), so a page
    given here would be documented as a page nested in a page."""
    forbidden = (403,) if roles_only else ()
    return extend_schema_view(
        list=extend_schema(
            operation_id=f"{name}_list",
            summary=f"{plural} in your scope",
            responses={200: serializer(many=True), **problems(400, 401, *forbidden, 404)},
            examples=[OpenApiExample("Page", value=example, response_only=True)],
        ),
        retrieve=extend_schema(
            operation_id=f"{name}_retrieve",
            summary=f"One of the {plural.lower()} in your scope",
            responses={200: serializer, **problems(401, *forbidden, 404)},
            examples=[OpenApiExample("One", value=example, response_only=True)],
        ),
    )


def _operations(result: dict):
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                yield operation


def _problem_response(status: int, headers: dict) -> dict:
    return {
        "description": _DESCRIPTIONS[status],
        "headers": headers,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _on_every_operation(result: dict, status: int, retry_after: str) -> dict:
    """Document ``status`` as a Problem with a ``Retry-After`` header (described by
    ``retry_after``) on every operation that does not document it already."""
    answer = _problem_response(
        status, {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": retry_after}}
    )
    for operation in _operations(result):
        operation["responses"].setdefault(str(status), copy.deepcopy(answer))
    return result


def add_throttled_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every operation may answer 429 (core/throttling.py throttles
    every API view), documented once here rather than in each view's ``responses``."""
    return _on_every_operation(result, 429, "Seconds until the limit's window ends.")


def add_unavailable_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every operation may answer 503 ``service_unavailable`` when the
    database cannot be reached (core.problems: the exception handler for API views, the
    problem middleware for the plain webhook view), so a client gets a typed Problem."""
    return _on_every_operation(result, 503, "Seconds to wait before retrying.")


def _replayable(status: str) -> bool:
    """Whether core.idempotency stores (and so replays) an answer with this status: not the
    refusals made before any work, a 429 (answered before the view), nor a 5xx other than the
    502 the payment gateway's silence is answered with (``replay_on_retry``)."""
    if not status.isdigit():
        return False
    code = int(status)
    if code in NOT_STORED or code == HTTPStatus.TOO_MANY_REQUESTS:
        return False
    return code < 500 or code == HTTPStatus.BAD_GATEWAY


def add_idempotent_replayed_header(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every operation taking an ``Idempotency-Key`` may answer a retry
    with the first answer replayed, marked ``Idempotent-Replayed: true`` (core.idempotency);
    the header is declared on each answer that can be replayed."""
    replayed = {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on a replay: the first answer to this `Idempotency-Key`, not a second run.",
    }
    for operation in _operations(result):
        parameters = operation.get("parameters", [])
        if not any(p.get("in") == "header" and p.get("name") == IDEMPOTENCY_HEADER for p in parameters):
            continue
        for status, response in operation["responses"].items():
            if _replayable(status):
                response.setdefault("headers", {})["Idempotent-Replayed"] = copy.deepcopy(replayed)
    return result


def mark_anonymous_operations(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: an operation that reads no JWT (token, refresh, logout, register:
    the credential is in the body; the refund webhook: a signature) says ``security: []``,
    so a client sends no bearer token and a linter sees the choice was made."""
    for operation in _operations(result):
        if operation.get("security") in (None, [{}]):
            operation["security"] = []
    return result
