"""The logging filter that masks PII (card, phone, passport numbers, IBANs) in every record, with
accounts.masking; settings.LOGGING puts it on every handler, beside core.logging's pieces."""

import logging

from accounts.masking import mask_text
from core.logging import STANDARD_ATTRS


class MaskPiiFilter(logging.Filter):
    """Masks card numbers, phone numbers, passport numbers and IBANs in the message and its extras.

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
            if name in STANDARD_ATTRS or isinstance(value, (int, float, bool, type(None))):
                continue
            # Extras (a request, a dict) are rendered to text here so they are masked too.
            setattr(record, name, mask_text(value if isinstance(value, str) else str(value)))
        return True
