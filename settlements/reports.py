"""The settlement file: a settlement's lines as CSV, produced row by row so a large file is
streamed (the API's ``?format=csv`` and the merchant portal's link both serve it)."""

import csv
from collections.abc import Iterator

from settlements.models import Settlement, SettlementLine

COLUMNS = [
    "settlement_id",
    "business_date",
    "line_id",
    "type",
    "plan_id",
    "merchant_reference",
    "refund_id",
    "gross",
    "fee",
    "net",
    "currency",
    "posted_at",
]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# such text is written with a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like object whose ``write`` returns what it was given (csv.writer's output)."""

    def write(self, text: str) -> str:
        return text


def _safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def settlement_csv_filename(settlement: Settlement) -> str:
    return f"settlement-{settlement.business_date.isoformat()}-{settlement.currency}-{settlement.pk}.csv"


def settlement_csv_rows(settlement: Settlement, *, chunk_size: int = 2000) -> Iterator[str]:
    """The header, then one CSV row per line of ``settlement`` in id order, read from the
    database in chunks (memory stays flat whatever the file's size)."""
    writer = csv.writer(_Line())
    yield writer.writerow(COLUMNS)
    lines = SettlementLine.objects.filter(settlement=settlement).order_by("id")
    for line in lines.iterator(chunk_size=chunk_size):
        yield writer.writerow(
            [
                settlement.pk,
                settlement.business_date.isoformat(),
                line.pk,
                line.type,
                line.plan_id or "",
                _safe(line.merchant_reference),
                line.refund_id or "",
                f"{line.gross:.2f}",
                f"{line.fee:.2f}",
                f"{line.net:.2f}",
                line.currency,
                line.posted_at.isoformat(),
            ]
        )
