"""The merchant's refund-status webhook: signature check, then queue (or apply at once).

``BNPL-Merchant: <merchant user_id>`` and ``BNPL-Signature: t=<unix seconds>,v1=<hex>``
where v1 is HMAC-SHA256 of ``"<t>.<raw body>"`` with the merchant's webhook secret.
Several ``v1=`` may be sent (a secret being rotated); any match passes, compared in
constant time. A timestamp more than 300 s away is refused (replays).

A DRF view so that the OpenAPI schema documents it like every other operation; the
signature is its only authentication, checked over the raw body before anything parses it.

The answer says what happened, never only what was sent (docs/WEBHOOKS.md):

- ``status`` is the refund's status in the webhook's lower case (``pending``,
  ``processing``, ``approved``, ``rejected``; a sent ``failed`` is ``rejected``);
- a status the refund cannot take (it is final, or already has it) is recorded at once and
  answered ``applied: false`` with the refund's status, ``processing_mode: "sync"``;
  nothing is queued;
- otherwise it is queued (``"async"``: ``applied: true`` means accepted, ``status`` is
  the refund's status before the worker applies it) or, with the broker down, applied at
  once (``"sync"``: ``status`` is the status after it, ``applied`` whether it changed it).
"""

import logging
import re
import time

from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from accounts.models import USER_ID_REGEX, User
from config.celery import app
from core.parsers import json_loads
from core.problems import PROBLEM_CONTENT_TYPE, DomainError
from core.schema import ProblemSerializer, problems
from core.serializers import StrictSerializer
from core.signatures import signature_problem
from core.tasks import enqueue
from refunds.models import Refund
from refunds.selectors import merchant_refund, webhook_merchant
from refunds.services import WEBHOOK_STATUSES, refund_status_can_apply, refund_status_change
from refunds.tasks import refund_status_apply_task

logger = logging.getLogger(__name__)

_MERCHANT_ID = re.compile(USER_ID_REGEX)


class RefundStatusIn(StrictSerializer):
    refund_id = serializers.CharField(max_length=128, help_text="The refund's transaction_id.")
    status = serializers.ChoiceField(choices=list(WEBHOOK_STATUSES))
    merchant_reference = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


# The refund's states as the webhook spells them: lower case, like the statuses it takes.
WEBHOOK_ANSWER_STATUSES = [status.lower() for status in Refund.Status.values]


def webhook_status(refund: Refund) -> str:
    """The refund's status in the webhook's vocabulary (``APPROVED`` → ``approved``)."""
    return refund.status.lower()


class RefundStatusOut(serializers.Serializer):
    refund_id = serializers.CharField(help_text="The refund's transaction_id.")
    status = serializers.ChoiceField(
        choices=WEBHOOK_ANSWER_STATUSES,
        help_text="The refund's status, in lower case like the statuses sent: after the call when "
        "`processing_mode` is `sync`; when it is `async`, before the worker applies the call.",
    )
    applied = serializers.BooleanField(
        help_text="true: the status sent was applied (`sync`) or accepted and queued for it (`async`). "
        "false: ignored, because the refund is already final (`approved`, `rejected`) or already has "
        "that status; the call was recorded, nothing changed and nothing was queued."
    )
    processing_mode = serializers.ChoiceField(
        choices=["async", "sync"],
        help_text="async: queued for a worker. sync: handled before answering, so `status` already "
        "reflects this call: the broker was down and the status was applied at once, or it was ignored.",
    )
    processed_at = serializers.DateTimeField()


def verify(merchant: User | None, header: str, body: bytes, now: float) -> str | None:
    """None when the signature is good; else why not."""
    if merchant is None:
        return "Unknown merchant."
    return signature_problem(merchant.webhook_secret, header, body, now)


def _enqueue(refund_id: int, status: str) -> bool:
    """Queue the change for a worker; False when the broker cannot be reached (or eager mode)."""
    queued = enqueue(refund_status_apply_task, refund_id, status)
    if not queued and not app.conf.task_always_eager:
        logger.warning("Broker unreachable: refund %s processed synchronously", refund_id)
    return queued


class InvalidSignature(DomainError):
    """The call is not signed by the merchant it names (or names none): 401, before any parsing.
    A DomainError, not DRF's AuthenticationFailed, which a view without authenticators turns
    into a 403."""

    status_code = 401
    code = "invalid_signature"
    title = "Unauthorized"  # as every other 401 of the API


class JsonWhateverAccept(BaseContentNegotiation):
    """The webhook answers JSON whatever the caller's ``Accept`` says (no 406): merchants'
    HTTP clients send all sorts, and the answer is the same document."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class RefundStatusWebhookView(APIView):
    """``POST /webhook/refund-status/``: 401 bad signature, 400 bad body, 404 unknown refund, else 200."""

    authentication_classes = []  # the signature is the authentication
    permission_classes = [AllowAny]
    # Not throttled: a call with a wrong signature is refused before any write, and a
    # merchant answered 429 would only retry (core/throttling.py).
    throttle_classes = []
    content_negotiation_class = JsonWhateverAccept
    # A merchant's server POSTs here; nothing else is served (no OPTIONS metadata either).
    http_method_names = ["post"]

    @extend_schema(
        operation_id="refund_status_webhook",
        summary="A merchant decides one of its refunds (signed webhook)",
        description=(
            "Signed with the merchant's webhook secret, not a JWT: `BNPL-Signature: t=<unix seconds>,v1=<hex>` "
            'where v1 is HMAC-SHA256 of `"<t>.<raw body>"`; several `v1=` may be sent while a secret is '
            "rotated. A timestamp more than 300 s away is refused.\n\n"
            "The answer says what happened: `status` is the refund's status (lower case), and `applied` "
            "whether the status sent was applied or accepted (`true`) or ignored because the refund is "
            "already final or already has it (`false`, nothing queued). In `async` mode the worker has not "
            "applied it yet: `status` is the refund's status before it. See docs/WEBHOOKS.md."
        ),
        auth=[],
        tags=["webhooks"],
        parameters=[
            OpenApiParameter(
                "BNPL-Merchant", str, OpenApiParameter.HEADER, required=True, description="Your merchant user_id."
            ),
            OpenApiParameter(
                "BNPL-Signature",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description='`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.',
            ),
        ],
        request=RefundStatusIn,
        responses={
            200: RefundStatusOut,
            **problems(400, 404, 413, 422),
            (401, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description="Unknown merchant, a missing, malformed or wrong signature, or a timestamp "
                "more than 300 s away (`invalid_signature`).",
            ),
        },
        examples=[
            OpenApiExample("Approve", value={"refund_id": "rf-1001", "status": "approved"}, request_only=True),
            OpenApiExample(
                "Queued",
                summary="Accepted: queued for the worker, the refund not yet changed",
                value={
                    "refund_id": "rf-1001",
                    "status": "pending",
                    "applied": True,
                    "processing_mode": "async",
                    "processed_at": "2026-11-22T10:00:00Z",
                },
                response_only=True,
            ),
            OpenApiExample(
                "Applied at once",
                summary="The broker was down: applied before answering",
                value={
                    "refund_id": "rf-1001",
                    "status": "approved",
                    "applied": True,
                    "processing_mode": "sync",
                    "processed_at": "2026-11-22T10:00:00Z",
                },
                response_only=True,
            ),
            OpenApiExample(
                "Already decided",
                summary="`rejected` sent for an approved refund: ignored, nothing queued",
                value={
                    "refund_id": "rf-1001",
                    "status": "approved",
                    "applied": False,
                    "processing_mode": "sync",
                    "processed_at": "2026-11-22T10:00:00Z",
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request):
        body = request.body  # the raw bytes the signature covers; nothing has parsed them
        merchant_id = request.headers.get("BNPL-Merchant", "")
        merchant = None
        if _MERCHANT_ID.fullmatch(merchant_id):  # no lookup for an id no merchant can have (NUL, too long)
            merchant = webhook_merchant(user_id=merchant_id)
        problem = verify(merchant, request.headers.get("BNPL-Signature", ""), body, time.time())
        if problem:
            raise InvalidSignature(problem)
        try:
            payload = json_loads(body)  # a string that is not text: 400 invalid_text, naming it
        except ParseError as exc:
            raise ParseError("The body is not valid JSON.") from exc
        incoming = RefundStatusIn(data=payload)
        incoming.is_valid(raise_exception=True)
        payload = incoming.validated_data
        reference = payload["merchant_reference"]
        refund = merchant_refund(merchant_id=merchant.pk, transaction_id=payload["refund_id"])
        if refund is None:
            raise NotFound("This merchant has no refund with this id.")
        if reference and not refund.merchant_reference:
            Refund.objects.filter(pk=refund.pk, merchant_reference="").update(merchant_reference=reference)
        status = WEBHOOK_STATUSES[payload["status"]]
        # Only a status the refund can still take goes to a worker. One it cannot (the refund is
        # final, or has it already) is recorded at once, under the plan's lock, and answered
        # with what the refund is: the caller learns now that it changed nothing.
        if refund_status_can_apply(current=refund.status, requested=status) and _enqueue(refund.pk, status):
            mode, applied = "async", True  # accepted: the worker applies it, re-checking under the lock
        else:
            mode = "sync"
            # RefundExceedsPlan (422) goes to the API's one problem handler, as every error here.
            refund, applied = refund_status_change(refund_id=refund.pk, status=status, source="webhook")
        return JsonResponse(
            {
                "refund_id": refund.transaction_id,
                "status": webhook_status(refund),
                "applied": applied,
                "processing_mode": mode,
                "processed_at": timezone.now().isoformat(),
            }
        )
