"""One POS line to one movement: the validation every source shares.

Every source (CSV, JSON lines, POSLog, HTTP push, REST polling, receipt tap) reduces its input to
``PosLine``s and calls ``normalize_line``; nothing else builds a ``Movement`` from POS data.

Invariants:
- A line that cannot become a movement becomes a ``CaptureIssue`` with the reason in words; it
  is never dropped silently. A line that moves no stock (voided, zero quantity) returns ``None``.
- The movement is not yet mapped to the item master (``sku is None``); the runtime maps it.
- A negative quantity on a sale is a return (and vice versa), the convention of most POS exports;
  adjustments keep their sign; transfers must be positive.
- ``occurred_at`` is always timezone-aware: a time without offset is read in the store's timezone,
  and the business day defaults to the local date of ``occurred_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from agent.domain import CaptureIssue, Disposition, Kind, Movement, make_event_id, make_issue_id
from pos_adapters.base import SourceContext

MAX_ID_LENGTH = 100
MAX_QUANTITY = Decimal(1_000_000)
MAX_EXPONENT = 15
"""Quantities and prices beyond 10**15 or below 10**-15 are refused before any arithmetic."""
MAX_LINE_NO = 999_999_999
"""Line numbers above this are refused: they must fit an SQLite INTEGER and a WMS's 32-bit column."""


@dataclass(frozen=True, slots=True)
class PosLine:
    """A POS line as a source read it, before validation (values may still be raw text)."""

    pos_transaction_id: str
    line_no: object
    occurred_at: object
    kind: str
    item: str
    quantity: object
    unit: str | None = None
    terminal_id: str | None = None
    business_day: object = None
    unit_price: object = None
    currency: str | None = None
    counterpart_location: str | None = None
    disposition: str | None = None
    voided: bool = False
    location: str | None = None


class LineError(ValueError):
    """A POS line value that cannot be used, with an issue code and the ``PosLine`` field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        """Keep the code (and the field, when known) next to the message."""
        super().__init__(message)
        self.code = code
        self.field = field


def parse_decimal(value: object, what: str) -> Decimal:
    """Parse a quantity or price from text or a JSON number."""
    if isinstance(value, bool) or value is None or value == "":
        raise LineError("BAD_NUMBER", f"{what} is empty")
    if isinstance(value, Decimal):
        result = value
    else:
        text = str(value).strip().replace("\u2212", "-")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise LineError("BAD_NUMBER", f"{what} {str(value)[:40]!r} is not a number") from None
    if not result.is_finite():
        raise LineError("BAD_NUMBER", f"{what} {str(value)[:40]!r} is not a finite number")
    if result == 0:
        return Decimal(0)
    if not -MAX_EXPONENT <= result.adjusted() <= MAX_EXPONENT:
        # Arithmetic on such a value (even abs()) overflows the decimal context: refuse it here, in words.
        raise LineError("BAD_NUMBER", f"{what} {str(value)[:40]!r} is out of any plausible range")
    return result


def parse_timestamp(value: object, ctx: SourceContext) -> datetime:
    """Parse an ISO 8601 timestamp; one without offset is in the store's timezone."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value or "").strip()
        if not text:
            raise LineError("BAD_DATE", "the timestamp is empty")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise LineError("BAD_DATE", f"timestamp {text[:40]!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ctx.timezone)
    return moment


def _parse_day(value: object, occurred_at: datetime, ctx: SourceContext) -> date:
    if value in (None, ""):
        return occurred_at.astimezone(ctx.timezone).date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise LineError("BAD_DATE", f"business day {str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None


def _parse_line_no(value: object) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise LineError("BAD_LINE_NO", f"line number {str(value)[:20]!r} is not a whole number") from None
    if number < 0:
        raise LineError("BAD_LINE_NO", f"line number {number} is negative")
    if number > MAX_LINE_NO:
        raise LineError("BAD_LINE_NO", f"line number {str(number)[:20]}... is larger than {MAX_LINE_NO:,}")
    return number


def _text(value: str | None, what: str, *, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise LineError("MISSING_FIELD", f"{what} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise LineError("FIELD_TOO_LONG", f"{what} is longer than {MAX_ID_LENGTH} characters")
    return text


def normalize_line(
    line: PosLine, ctx: SourceContext, *, source: str, source_ref: str, raw: str = ""
) -> Movement | CaptureIssue | None:
    """Validate a POS line; return its movement, the issue that stops it, or None if it moves nothing."""
    try:
        return build_movement(line, ctx, source=source, source_ref=source_ref)
    except LineError as exc:
        return CaptureIssue(
            issue_id=make_issue_id(source, source_ref),
            source=source,
            source_ref=source_ref,
            code=exc.code,
            message=str(exc),
            pos_transaction_id=(line.pos_transaction_id or None),
            line_no=safe_line_no(line.line_no),
            raw_item_id=(line.item or None),
            raw=raw,
        )


def build_movement(line: PosLine, ctx: SourceContext, *, source: str, source_ref: str) -> Movement | None:
    """Validate a POS line; return its movement or None, or raise ``LineError`` naming the field at fault.

    ``normalize_line`` is the form most sources want; this one lets a parser report the field (for
    example as a JSON path).
    """
    at = "pos_transaction_id"  # the field being read, named in any LineError raised meanwhile
    try:
        txn = _text(line.pos_transaction_id, "transaction id")
        at = "line_no"
        line_no = _parse_line_no(line.line_no)
        at = "kind"
        try:
            kind = Kind(line.kind)
        except ValueError:
            raise LineError(
                "BAD_KIND",
                f"POS type {line.kind!r} is not a movement kind (sale, return, transfer_out, "
                "transfer_in, adjustment); map it in the source's kinds table",
            ) from None
        at = "item"
        item = _text(line.item, "item")
        at = "quantity"
        quantity = parse_decimal(line.quantity, "quantity")
        if line.voided or quantity == 0:
            return None
        if abs(quantity) > MAX_QUANTITY:
            raise LineError("BAD_NUMBER", f"quantity {quantity} is implausibly large")
        if quantity < 0:
            if kind in (Kind.SALE, Kind.RETURN):
                kind = Kind.RETURN if kind is Kind.SALE else Kind.SALE
                quantity = -quantity
            elif kind is not Kind.ADJUSTMENT:
                raise LineError("BAD_NUMBER", f"a {kind.value} cannot have a negative quantity ({quantity})")
        at = "occurred_at"
        occurred_at = parse_timestamp(line.occurred_at, ctx)
        at = "counterpart_location"
        counterpart = _text(line.counterpart_location, "counterpart location", required=False) or None
        if kind in (Kind.TRANSFER_OUT, Kind.TRANSFER_IN) and counterpart is None:
            raise LineError("MISSING_COUNTERPART", f"a {kind.value} must name the other location")
        at = "disposition"
        disposition: Disposition | None = None
        if line.disposition:
            try:
                disposition = Disposition(line.disposition.strip().lower())
            except ValueError:
                raise LineError(
                    "BAD_DISPOSITION", f"disposition {line.disposition!r} is not sellable, damaged or hold"
                ) from None
        at = "unit_price"
        price = parse_decimal(line.unit_price, "unit price") if line.unit_price not in (None, "") else None
        at = "terminal_id"
        terminal = _text(line.terminal_id, "terminal", required=False)
        at = "business_day"
        business_day = _parse_day(line.business_day, occurred_at, ctx)
    except LineError as exc:
        if exc.field is None:
            exc.field = at
        raise
    unit = (line.unit or "").strip().upper() or None
    return Movement(
        event_id=make_event_id(ctx.store_id, txn, line_no, kind),
        store_id=ctx.store_id,
        terminal_id=terminal,
        pos_transaction_id=txn,
        line_no=line_no,
        business_day=business_day,
        occurred_at=occurred_at,
        kind=kind,
        sku=None,
        raw_item_id=item,
        quantity=quantity,
        unit=unit,
        original_quantity=quantity,
        original_unit=unit,
        location=(line.location or ctx.location),
        counterpart_location=counterpart,
        disposition=disposition,
        unit_price=price,
        currency=(line.currency or None),
        source=source,
        source_ref=source_ref,
    )


def safe_line_no(value: object) -> int | None:
    """Return ``value`` as a line number for an issue record, or None if it is not a usable one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 0 <= number <= MAX_LINE_NO else None
