"""The merchant's refund-status webhook: signature check, then queue (or apply at once).

``BNPL-Merchant: <merchant user_id>`` and ``BNPL-Signature: t=<unix seconds>,v1=<hex>``
where v1 is HMAC-SHA256 of ``"<t>.<raw body>"`` with the merchant's webhook secret.
Several ``v1=`` may be sent (a secret being rotated); any match passes, compared in
constant time. A timestamp more than 300 s away is refused (replays).
"""

import json
import logging
import time

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import serializers

from accounts.models import User
from config.celery import app, enqueue
from config.problems import PROBLEM_CONTENT_TYPE, problem_response, validation_problem
from config.signatures import signature_problem
from refunds.models import Refund
from refunds.services import WEBHOOK_STATUSES, RefundExceedsPlan, refund_status_apply
from refunds.tasks import refund_status_apply_task

logger = logging.getLogger(__name__)


class RefundStatusIn(serializers.Serializer):
    refund_id = serializers.CharField(max_length=128, help_text="The refund's transaction_id.")
    status = serializers.ChoiceField(choices=list(WEBHOOK_STATUSES))
    merchant_reference = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


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


@csrf_exempt
@require_POST
def refund_status_webhook(request):
    """``POST /webhook/refund-status/``: 401 bad signature, 400 bad body, 404 unknown refund, else 200."""
    body = request.body
    merchant = User.objects.filter(
        user_id=request.headers.get("BNPL-Merchant", ""), role=User.Role.MERCHANT, is_active=True
    ).first()
    problem = verify(merchant, request.headers.get("BNPL-Signature", ""), body, time.time())
    if problem:
        return problem_response(status=401, code="invalid_signature", detail=problem)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return problem_response(status=400, code="parse_error", detail="The body is not valid JSON.")
    incoming = RefundStatusIn(data=payload)
    if not incoming.is_valid():
        return JsonResponse(validation_problem(incoming.errors), status=400, content_type=PROBLEM_CONTENT_TYPE)
    payload = incoming.validated_data
    reference = payload["merchant_reference"]
    refund = Refund.objects.filter(merchant=merchant, transaction_id=payload["refund_id"]).first()
    if refund is None:
        return problem_response(status=404, code="not_found", detail="This merchant has no refund with this id.")
    if reference and not refund.merchant_reference:
        Refund.objects.filter(pk=refund.pk, merchant_reference="").update(merchant_reference=reference)
    status = WEBHOOK_STATUSES[payload["status"]]
    mode = "async"
    if not _enqueue(refund.pk, status):
        mode = "sync"
        try:
            refund_status_apply(refund_id=refund.pk, status=status, source="webhook")
        except RefundExceedsPlan as exc:
            return problem_response(status=422, code=exc.code, title=exc.title, detail=exc.detail)
    return JsonResponse(
        {
            "refund_id": refund.transaction_id,
            "status": payload["status"],
            "processing_mode": mode,
            "processed_at": timezone.now().isoformat(),
        }
    )
