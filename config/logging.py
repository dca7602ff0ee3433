"""Logging pieces: JSON lines, the request id on every record, PII masked in every record."""

import contextvars
import json
import logging
from datetime import UTC, datetime

from accounts.masking import mask_text

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or ``-``) on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            # django.request logs after the middleware has finished, but passes the request.
            record.request_id = getattr(getattr(record, "request", None), "request_id", None) or request_id_var.get()
        return True


class MaskPiiFilter(logging.Filter):
    """Masks card numbers, phone numbers and passport numbers in the message and its extras.

    The message is rendered once and replaced, so arguments never reach a formatter in
    clear; a traceback is rendered and masked too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
            record.exc_info = None
        for name, value in list(vars(record).items()):
            if name in _STANDARD_ATTRS or isinstance(value, (int, float, bool, type(None))):
                continue
            # Extras (a request, a dict) are rendered to text here so they are masked too.
            setattr(record, name, mask_text(value if isinstance(value, str) else str(value)))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)
