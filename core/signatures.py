"""The webhook signature scheme, both ways (inbound refund status, outbound merchant events).

``BNPL-Signature: t=<unix seconds>,v1=<hex>`` where v1 is HMAC-SHA256 of ``"<t>.<raw body>"``
with the merchant's webhook secret. Several ``v1=`` may be sent (a secret being rotated);
any match passes, compared in constant time. A timestamp more than 300 s away is refused.
"""

import hashlib
import hmac
import re

TOLERANCE_SECONDS = 300
# ASCII digits only: str.isdigit() also takes superscripts, which int() refuses, and other
# scripts' digits, which it reads as numbers; the bounded length keeps int() from refusing
# a huge one.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature of ``body`` at ``timestamp`` (what merchants compute too)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``BNPL-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def _parse(header: str) -> tuple[int, list[str]] | None:
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    return (timestamp, signatures) if timestamp is not None and signatures else None


def signature_problem(secret: str, header: str, body: bytes, now: float) -> str | None:
    """None when ``header`` signs ``body`` with ``secret`` within the tolerance; else why not."""
    if not secret:
        return "Unknown merchant."
    parsed = _parse(header)
    if parsed is None:
        return "Missing or malformed BNPL-Signature."
    timestamp, signatures = parsed
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return "The signature's timestamp is too old or in the future."
    expected = sign(secret, timestamp, body)
    # compare_digest refuses str with non-ASCII characters; such a candidate cannot match.
    if not any(candidate.isascii() and hmac.compare_digest(expected, candidate) for candidate in signatures):
        return "The signature does not match."
    return None
