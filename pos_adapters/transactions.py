"""THE parser of the POS transaction JSON (DESIGN.md), and the reversal of post-voided lines.

One document is one transaction object or a batch ``{"transactions": [...]}``. A transaction has
``transaction_id``, ``occurred_at``, ``kind`` (``sale``, ``return``, ``transfer_out``, ``transfer_in``,
``adjustment`` or ``post_void``) and ``lines``; optionally ``terminal_id``, ``business_day``,
``counterpart_location``, ``location``, ``currency``. A line has ``item`` (SKU, barcode or alias) and
``quantity`` (decimal string or number); optionally ``line_no`` (default: its position, from 1),
``unit``, ``unit_price``, ``voided``, ``disposition``, and a line-level ``kind``,
``counterpart_location`` or ``location`` that overrides the transaction's. A ``post_void`` has no
lines and names what it voids: ``"voids": {"transaction_id", "terminal_id", "business_day"}``
(terminal and day optional). Other fields are accepted and ignored.

Used unchanged by ``jsonl`` files, the ``journal`` source and ``http_ingest`` request bodies.

Invariants:
- A document whose shape is wrong (not an object, ``transactions`` or ``lines`` not lists, a
  transaction or line that is not an object) raises ``TransactionsInvalid`` and yields nothing.
- Every value problem is a ``FieldError`` with a path such as ``transactions[3].lines[0].quantity``.
  With ``strict=True`` any of them raises ``TransactionsInvalid`` (all of them listed, nothing
  yielded: what an HTTP push wants); otherwise each becomes a ``CaptureIssue`` and the rest of the
  document is still captured (what a file wants).
- Every line becomes a movement through ``lines.build_movement``, the one normaliser.
- A post-void becomes a ``PostVoid``; ``reverse_movements`` turns it plus the voided transaction's
  stored lines into reversing movements: the reverse kind (sale and return swap, transfer_out and
  transfer_in swap, an adjustment is negated), with the event id of (store, the post-void's own
  transaction id, the original line number, the reversed kind), so a re-read post-void changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from agent.domain import CaptureIssue, Disposition, Kind, Movement, PostVoid, make_event_id, make_issue_id
from pos_adapters.base import SourceContext
from pos_adapters.lines import MAX_ID_LENGTH, LineError, PosLine, build_movement, parse_timestamp, safe_line_no

POST_VOID = "post_void"
KINDS = (*(k.value for k in Kind), POST_VOID)
MAX_TRANSACTIONS = 10_000
MAX_LINES = 10_000

REVERSED_KIND = {
    Kind.SALE: Kind.RETURN,
    Kind.RETURN: Kind.SALE,
    Kind.TRANSFER_OUT: Kind.TRANSFER_IN,
    Kind.TRANSFER_IN: Kind.TRANSFER_OUT,
    Kind.ADJUSTMENT: Kind.ADJUSTMENT,
}

# PosLine field -> (JSON key, True if it lives on the transaction rather than the line)
_JSON_KEY = {
    "pos_transaction_id": ("transaction_id", True),
    "occurred_at": ("occurred_at", True),
    "business_day": ("business_day", True),
    "terminal_id": ("terminal_id", True),
    "currency": ("currency", True),
    "line_no": ("line_no", False),
    "item": ("item", False),
    "quantity": ("quantity", False),
    "unit": ("unit", False),
    "unit_price": ("unit_price", False),
    "disposition": ("disposition", False),
}
_LINE_OVERRIDES = ("kind", "counterpart_location", "location")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a transaction document: where (a JSON path), a code, and what is wrong in words."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        """``path: message`` (or the message alone for the document itself)."""
        return f"{self.path}: {self.message}" if self.path else self.message


class TransactionsInvalid(ValueError):
    """The document cannot be taken as it is; ``errors`` lists every problem with its path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        """Keep the errors; the message lists the first few."""
        self.errors = list(errors)
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{shown}{more}")


@dataclass(slots=True)
class ParsedTransactions:
    """What one document holds: movements, post-voids, and (non-strict) the problems as issues."""

    movements: list[Movement] = field(default_factory=list)
    voids: list[PostVoid] = field(default_factory=list)
    issues: list[CaptureIssue] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    transactions: int = 0


def parse_transactions(
    obj: object, ctx: SourceContext, *, source: str, source_ref: str, strict: bool = False
) -> ParsedTransactions:
    """Parse one decoded JSON document (a transaction or ``{"transactions": [...]}``).

    Raises ``TransactionsInvalid`` if its shape is wrong, or, with ``strict``, if any value is.
    """
    txns, prefix = _transactions(obj)
    shape = [e for i, t in enumerate(txns) for e in _shape_errors(t, _join(prefix(i)))]
    if shape:
        raise TransactionsInvalid(shape)
    result = ParsedTransactions(transactions=len(txns))
    for i, txn in enumerate(txns):
        assert isinstance(txn, dict)
        _parse_one(txn, _join(prefix(i)), ctx, source, source_ref, result)
    if strict and result.errors:
        raise TransactionsInvalid(result.errors)
    return result


def _transactions(obj: object) -> tuple[list[object], Any]:
    if isinstance(obj, dict) and "transactions" in obj:
        txns = obj["transactions"]
        if not isinstance(txns, list):
            raise TransactionsInvalid([FieldError("transactions", "BAD_SHAPE", "must be a list of transactions")])
        if len(txns) > MAX_TRANSACTIONS:
            raise TransactionsInvalid(
                [FieldError("transactions", "TOO_LARGE", f"more than {MAX_TRANSACTIONS} transactions; send fewer")]
            )
        return txns, lambda i: f"transactions[{i}]"
    if isinstance(obj, dict):
        return [obj], lambda _i: ""
    raise TransactionsInvalid(
        [FieldError("", "BAD_SHAPE", 'expected a JSON object: one transaction or {"transactions": [...]}')]
    )


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _shape_errors(txn: object, path: str) -> list[FieldError]:
    if not isinstance(txn, dict):
        return [FieldError(path, "BAD_SHAPE", "a transaction must be a JSON object")]
    errors = []
    lines = txn.get("lines", [])
    if lines is None:
        lines = []
    if not isinstance(lines, list):
        errors.append(FieldError(_join(path, "lines"), "BAD_SHAPE", "must be a list of lines"))
    elif len(lines) > MAX_LINES:
        errors.append(FieldError(_join(path, "lines"), "TOO_LARGE", f"more than {MAX_LINES} lines"))
    else:
        errors += [
            FieldError(_join(path, f"lines[{j}]"), "BAD_SHAPE", "a line must be a JSON object")
            for j, line in enumerate(lines)
            if not isinstance(line, dict)
        ]
    voids = txn.get("voids")
    if voids is not None and not isinstance(voids, dict):
        errors.append(FieldError(_join(path, "voids"), "BAD_SHAPE", "must be an object naming the voided transaction"))
    return errors


def _parse_one(
    txn: dict[str, Any], path: str, ctx: SourceContext, source: str, source_ref: str, out: ParsedTransactions
) -> None:
    errors: list[FieldError] = []

    def error(key: str, code: str, message: str) -> None:
        errors.append(FieldError(_join(path, key), code, message))

    txn_id = _text(txn.get("transaction_id"))
    if not txn_id:
        error("transaction_id", "MISSING_FIELD", "transaction_id is missing or empty")
    elif len(txn_id) > MAX_ID_LENGTH:
        error("transaction_id", "FIELD_TOO_LONG", f"transaction_id is longer than {MAX_ID_LENGTH} characters")
    kind = _text(txn.get("kind")).lower()
    if kind not in KINDS:
        error("kind", "BAD_KIND", f"kind {txn.get('kind')!r} is not one of {', '.join(KINDS)}")
    occurred = txn.get("occurred_at")
    try:
        occurred_at = parse_timestamp(occurred, ctx)
    except LineError as exc:
        error("occurred_at", exc.code, str(exc))
    if kind != POST_VOID:
        _day(txn.get("business_day"), "business_day", error)
    if not errors and kind == POST_VOID:
        void = _post_void(txn, txn_id, occurred_at, ctx, source, source_ref, error)
        if void is not None and not errors:
            out.voids.append(void)
    elif not errors:
        _lines(txn, path, txn_id, kind, ctx, source, source_ref, out, errors)
    elif kind != POST_VOID:
        errors += _line_errors_despite(txn, path, txn_id, kind, ctx, source, source_ref)
    _report(errors, txn, txn_id or None, source, source_ref, out)


def _line_errors_despite(
    txn: dict[str, Any], path: str, txn_id: str, kind: str, ctx: SourceContext, source: str, source_ref: str
) -> list[FieldError]:
    """Check the lines of a transaction whose own fields are wrong, so every problem is reported at once.

    The lines are validated against a stand-in for the broken transaction fields; only their own
    errors are kept, and no movement of the transaction is stored.
    """
    stand_in = {**txn, "occurred_at": "2000-01-01T00:00:00+00:00", "business_day": None}
    scratch = ParsedTransactions()
    _lines(stand_in, path, txn_id or "-", kind if kind in KINDS else "sale", ctx, source, source_ref, scratch, [])
    return [e for e in scratch.errors if e.path.startswith(_join(path, "lines["))]


def _post_void(
    txn: dict[str, Any], txn_id: str, occurred_at: Any, ctx: SourceContext, source: str, source_ref: str, error: Any
) -> PostVoid | None:
    if txn.get("lines"):
        error("lines", "BAD_SHAPE", "a post_void carries no lines; it reverses the transaction named in voids")
    target = txn.get("voids")
    if not isinstance(target, dict):
        error("voids", "MISSING_FIELD", "a post_void must name the voided transaction in voids")
        return None
    voided = _text(target.get("transaction_id"))
    if not voided:
        error("voids.transaction_id", "MISSING_FIELD", "voids.transaction_id is missing or empty")
        return None
    if voided == txn_id:
        error("voids.transaction_id", "BAD_VOID", "a post_void cannot void itself")
        return None
    voided_day = _day(target.get("business_day"), "voids.business_day", error)
    business_day = _day(txn.get("business_day"), "business_day", error) or occurred_at.astimezone(ctx.timezone).date()
    return PostVoid(
        store_id=ctx.store_id,
        pos_transaction_id=txn_id,
        terminal_id=_text(txn.get("terminal_id")),
        business_day=business_day,
        occurred_at=occurred_at,
        voided_transaction_id=voided,
        voided_terminal_id=_text(target.get("terminal_id")) or None,
        voided_business_day=voided_day,
        source=source,
        source_ref=source_ref,
    )


def _day(value: object, key: str, error: Any) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        error(key, "BAD_DATE", f"{key.rsplit('.', 1)[-1]} {str(value)[:40]!r} is not a date (YYYY-MM-DD)")
        return None


def _lines(
    txn: dict[str, Any],
    path: str,
    txn_id: str,
    kind: str,
    ctx: SourceContext,
    source: str,
    source_ref: str,
    out: ParsedTransactions,
    errors: list[FieldError],
) -> None:
    seen: dict[tuple[int, str], int] = {}
    for j, line in enumerate(txn.get("lines") or []):
        line_path = _join(path, f"lines[{j}]")
        problems: list[FieldError] = []
        voided = line.get("voided", False)
        if voided is True:
            continue  # a voided line moves nothing, whatever else it says
        if voided not in (False, None):
            problems.append(FieldError(_join(line_path, "voided"), "BAD_VALUE", "voided must be true or false"))
        pos_line = PosLine(
            pos_transaction_id=txn_id,
            line_no=line.get("line_no", j + 1),
            occurred_at=txn.get("occurred_at"),
            kind=_text(line.get("kind", kind)).lower(),
            item=_text(line.get("item")),
            quantity=_number(line.get("quantity")),
            unit=_text(line.get("unit")) or None,
            terminal_id=_text(txn.get("terminal_id")) or None,
            business_day=txn.get("business_day"),
            unit_price=_number(line.get("unit_price")),
            currency=_text(txn.get("currency")) or None,
            counterpart_location=_text(line.get("counterpart_location", txn.get("counterpart_location"))) or None,
            disposition=_text(line.get("disposition")) or None,
            location=_text(line.get("location", txn.get("location"))) or None,
        )
        movement: Movement | None = None
        if not problems:
            try:
                movement = build_movement(pos_line, ctx, source=source, source_ref=source_ref)
            except LineError as exc:
                problems.append(FieldError(_field_path(exc.field, path, line_path, line), exc.code, str(exc)))
        if movement is not None:
            key = (movement.line_no, movement.kind.value)
            if key in seen:
                problems.append(
                    FieldError(
                        _join(line_path, "line_no"),
                        "DUPLICATE_LINE",
                        f"line_no {movement.line_no} ({movement.kind.value}) appears twice in transaction "
                        f"{txn_id} (also lines[{seen[key]}]); each line needs its own number",
                    )
                )
            else:
                seen[key] = j
                out.movements.append(movement)
        if problems:
            _report(problems, line, txn_id, source, source_ref, out, line_no=_int(line.get("line_no", j + 1)))


def _field_path(name: str | None, txn_path: str, line_path: str, line: Mapping[str, Any]) -> str:
    if name in _LINE_OVERRIDES:
        return _join(line_path if name in line else txn_path, name)
    key, on_transaction = _JSON_KEY.get(name or "", (name or "", False))
    return _join(txn_path if on_transaction else line_path, key)


def _report(
    errors: list[FieldError],
    raw: object,
    txn_id: str | None,
    source: str,
    source_ref: str,
    out: ParsedTransactions,
    line_no: int | None = None,
) -> None:
    out.errors.extend(errors)
    for error in errors:
        out.issues.append(
            CaptureIssue(
                issue_id=make_issue_id(source, f"{source_ref}\x1f{error.path}"),
                source=source,
                source_ref=source_ref,
                code=error.code,
                message=str(error),
                pos_transaction_id=txn_id,
                line_no=line_no,
                raw_item_id=_text(raw.get("item")) or None if isinstance(raw, dict) else None,
                raw=_compact(raw),
            )
        )


def _int(value: object) -> int | None:
    return safe_line_no(value)


def _text(value: object) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def _number(value: object) -> object:
    """Keep numbers exact: a JSON float is read through its text, never its binary value."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _compact(raw: object) -> str:
    try:
        return json.dumps(raw, separators=(",", ":"), default=str)[:4000]
    except (TypeError, ValueError):
        return repr(raw)[:4000]


def reverse_movements(void: PostVoid, originals: Sequence[Movement]) -> tuple[list[Movement], list[CaptureIssue]]:
    """Return the reversing movements of a post-void's original lines (unmapped) and what cannot be reversed.

    A return whose goods were set aside (disposition damaged or hold) cannot be undone by a sale,
    which would take the item off the sellable shelf; it becomes an issue for a person instead.
    """
    reversals: list[Movement] = []
    issues: list[CaptureIssue] = []
    for m in originals:
        if m.kind is Kind.RETURN and m.disposition not in (None, Disposition.SELLABLE):
            issues.append(
                CaptureIssue(
                    issue_id=make_issue_id(void.source, f"{void.pos_transaction_id}\x1f{m.event_id}"),
                    source=void.source,
                    source_ref=void.source_ref,
                    code="VOID_NOT_REVERSIBLE",
                    message=(
                        f"post-void {void.pos_transaction_id} voids return line {m.line_no} of transaction "
                        f"{m.pos_transaction_id}, whose goods were booked as {m.disposition}; possync cannot take "
                        "them back out of that stock by itself. Correct the stock in the WMS, then resolve this."
                    ),
                    pos_transaction_id=void.pos_transaction_id,
                    line_no=m.line_no,
                    raw_item_id=m.raw_item_id,
                )
            )
            continue
        kind = REVERSED_KIND[m.kind]
        quantity = -m.original_quantity if m.kind is Kind.ADJUSTMENT else m.original_quantity
        reversals.append(
            Movement(
                event_id=make_event_id(m.store_id, void.pos_transaction_id, m.line_no, kind),
                store_id=m.store_id,
                terminal_id=void.terminal_id,
                pos_transaction_id=void.pos_transaction_id,
                line_no=m.line_no,
                business_day=void.business_day,
                occurred_at=void.occurred_at,
                kind=kind,
                sku=None,
                raw_item_id=m.raw_item_id,
                quantity=quantity,
                unit=m.original_unit,
                original_quantity=quantity,
                original_unit=m.original_unit,
                location=m.location,
                counterpart_location=m.counterpart_location,
                disposition=None,
                unit_price=m.unit_price,
                currency=m.currency,
                source=void.source,
                source_ref=f"{void.source_ref} (post-void of {m.pos_transaction_id} line {m.line_no})",
            )
        )
    return reversals, issues
