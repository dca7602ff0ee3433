"""Idempotency-Key for POSTs that create or move money (IETF httpapi draft, Stripe's rules).

- A key (1 to 255 characters) is scoped to the authenticated principal and kept 24 hours.
- The request is fingerprinted (method, path, canonical JSON body). The same key with the
  same request replays the stored status and body with ``Idempotent-Replayed: true``; with
  a different request it is a 422 ``idempotency_key_reused``; while the first request is
  still running it is a 409 ``idempotency_key_in_flight``.
- Nothing is stored when the request never started its work: invalid input (400), no
  authentication or permission (401, 403), an object outside the caller's scope (404),
  or a server error (5xx, whose transaction rolled back); the key can then be used again.
- When the database fails under work done in several transactions (payments), whether it
  was done is unknown (a COMMIT may have happened unheard): the key stays in flight, and a
  retry after ``BNPL_IDEMPOTENCY_LEASE_SECONDS`` takes it over and runs the work again
  under the same claim, whose outside calls carry the same key
  (``idempotency_gateway_key``), so it finds what the first run did instead of doing it twice.
"""

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.models import IdempotencyKey
from core.problems import DATABASE_UNAVAILABLE, DomainError, FieldInvalid

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
NOT_STORED = {400, 401, 403, 404, 405, 413, 415}

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "1 to 255 characters (not only spaces), unique per operation you mean to perform. Retrying with the same key "
        "replays the first answer (`Idempotent-Replayed: true`) instead of doing it twice; the same key "
        "with a different body is a 422, and a 409 while the first request is still running. Kept 24 hours."
    ),
)


class IdempotencyKeyReused(DomainError):
    status_code = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"
    default_detail = "This Idempotency-Key was used with a different request."


class IdempotencyKeyInFlight(DomainError):
    status_code = 409
    code = "idempotency_key_in_flight"
    title = "Request in progress"
    default_detail = "A request with this Idempotency-Key is still being processed; retry shortly."


def request_fingerprint(request) -> str:
    """SHA-256 of method, path and the body as canonical JSON (key order and spacing ignored)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


# ON CONFLICT DO NOTHING instead of catching the unique violation: no savepoint is needed
# around it inside the handler's transaction, and a second request with the key waits here
# until the first one's transaction ends, then finds its row.
_CLAIM_SQL = """
INSERT INTO payments_idempotencykey (principal_id, key, method, path, fingerprint, status, response_status,
                                     response_body, created_at, expires_at)
VALUES (%s, %s, %s, %s, %s, %s, NULL, '', %s, %s)
ON CONFLICT (principal_id, key) DO NOTHING
RETURNING id
"""


# The answer kept for replays; written out like the claim, as it runs on every request made
# with a key (the ORM took longer to compose it than the database to run it).
_ANSWER_SQL = "UPDATE payments_idempotencykey SET status = %s, response_status = %s, response_body = %s WHERE id = %s"


@dataclass(frozen=True)
class Claim:
    """A key this request claimed (``made_now``), or took over (the record's ``pk``)."""

    pk: int
    made_now: bool = False


def _claim(request, key: str, fingerprint: str) -> Claim | HttpResponse:
    """Record the key as in flight (its record), take over one abandoned in flight past the
    lease, or answer from the record a previous request left."""
    principal = request.user
    for _ in range(2):
        now = timezone.now()
        expires_at = now + timedelta(hours=settings.BNPL_IDEMPOTENCY_TTL_HOURS)
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_SQL,
                [
                    *(principal.pk, key, request.method, request.path[:255], fingerprint),
                    *(IdempotencyKey.Status.IN_FLIGHT, now, expires_at),
                ],
            )
            claimed = cursor.fetchone()
        if claimed is not None:
            return Claim(claimed[0], made_now=True)
        existing = IdempotencyKey.objects.filter(principal=principal, key=key).first()
        if existing is None:
            continue  # removed meanwhile: try to claim it again
        if existing.expires_at <= now:
            IdempotencyKey.objects.filter(pk=existing.pk).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if existing.status == IdempotencyKey.Status.IN_FLIGHT:
            if _take_over(existing):
                return Claim(existing.pk)
            raise IdempotencyKeyInFlight()
        return _replay(existing)
    raise IdempotencyKeyInFlight()


def _take_over(record: IdempotencyKey) -> bool:
    """Claim a key left in flight past the lease by a request that died; one retry wins."""
    now = timezone.now()
    if record.created_at > now - timedelta(seconds=settings.BNPL_IDEMPOTENCY_LEASE_SECONDS):
        return False
    taken = IdempotencyKey.objects.filter(
        pk=record.pk, status=IdempotencyKey.Status.IN_FLIGHT, created_at=record.created_at
    ).update(created_at=now)
    return taken == 1


def idempotency_gateway_key(request) -> str | None:
    """The key for the outside calls of a request made with an Idempotency-Key: the same for
    every run under one claim, so a run that takes over an abandoned claim finds what the
    first one did. None without an Idempotency-Key."""
    claim = getattr(request, "idempotency_claim", None)
    return None if claim is None else f"idem_{claim.pk}"


def idempotency_gateway_key_unused(request) -> bool:
    """Whether nothing can have been done yet under the request's gateway key: its claim was
    made by this request (a new row, so a new key), not taken over from one abandoned. False
    without an Idempotency-Key."""
    claim = getattr(request, "idempotency_claim", None)
    return getattr(claim, "made_now", False)


def _replay(record: IdempotencyKey) -> HttpResponse:
    content_type = "application/problem+json" if record.response_status >= 400 else "application/json"
    response = HttpResponse(record.response_body, status=record.response_status, content_type=content_type)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(handler=None, *, atomic: bool = False):
    """Decorate a DRF view method (``create``, a POST ``@action``) to honour ``Idempotency-Key``.

    ``@idempotent(atomic=True)`` is for handlers whose work is one database transaction with
    no outside call: the key, the work and the stored answer then commit together, and a
    second request with the key waits for the first to finish and replays its answer.
    Handlers that call out between transactions (payments) use the plain form: the key is
    claimed first, committed, and answers 409 while the work runs.
    """
    if handler is None:
        return functools.partial(idempotent, atomic=atomic)

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise FieldInvalid(HEADER, f"Use 1 to {MAX_KEY_LENGTH} characters.")
        if not atomic:
            return _run_once(handler, view, request, key, args, kwargs, atomic=False)
        with transaction.atomic():
            return _run_once(handler, view, request, key, args, kwargs, atomic=True)

    return wrapper


def _run_once(handler, view, request, key: str, args, kwargs, *, atomic: bool):
    """Claim the key, run the handler once and store its answer (or forget the key: in one
    transaction by rolling it all back, which works even when the database refused a
    statement; else by deleting the claim)."""
    claimed = _claim(request, key, request_fingerprint(request))
    if isinstance(claimed, HttpResponse):
        return claimed
    request.idempotency_claim = claimed
    final = False
    try:
        response = handler(view, request, *args, **kwargs)
    except Exception as exc:
        final = getattr(exc, "replay_on_retry", False)
        try:
            response = view.handle_exception(exc)  # the problem document the client gets
        except Exception:
            if not atomic:
                IdempotencyKey.objects.filter(pk=claimed.pk).delete()  # a 500: nothing was done
            raise
        if not atomic and isinstance(exc, DATABASE_UNAVAILABLE):
            return response  # done or not, unknown: the claim stays in flight (see the module's doc)
    if response.status_code in NOT_STORED or (response.status_code >= 500 and not final):
        if atomic:
            transaction.set_rollback(True)
        else:
            IdempotencyKey.objects.filter(pk=claimed.pk).delete()
        return response
    body = _rendered(view, request, response)
    with connection.cursor() as cursor:
        cursor.execute(_ANSWER_SQL, [IdempotencyKey.Status.COMPLETED, response.status_code, body, claimed.pk])
    return response


def _rendered(view, request, response) -> str:
    """The answer's body, byte for byte what the client receives: rendered now, as DRF would
    render it after the view (the renderer and context its request negotiated), and kept
    rendered, so it is not rendered twice. A renderer that writes no JSON stores JSON."""
    renderer = getattr(request, "accepted_renderer", None)
    if isinstance(response, Response) and isinstance(renderer, JSONRenderer):
        response.accepted_renderer = renderer
        response.accepted_media_type = request.accepted_media_type
        response.renderer_context = view.get_renderer_context()
        response.render()
        return response.content.decode()
    return JSONRenderer().render(response.data).decode()


def idempotency_keys_prune() -> int:
    """Delete the keys past their 24 hours; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
