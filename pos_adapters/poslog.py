"""ARTS / NRF POSLog XML: retail transactions to movements, streamed, parsed with defusedxml.

Mapping (see docs/sources/file_drop.md for the full table):
- A ``Transaction`` is identified by store, workstation, sequence number and business day; its
  movements carry ``pos_transaction_id = "<RetailStoreID>-<WorkstationID>-<SequenceNumber>-<YYYYMMDD>"``
  and ``terminal_id = WorkstationID``; the time is ``EndDateTime`` (else ``BeginDateTime``, else
  ``ReceiptDateTime``), read in the store's time zone when it has no offset.
- ``RetailTransaction/LineItem/Sale`` is a sale and ``.../Return`` a return, line number =
  ``LineItem/SequenceNumber``; the item is ``ItemID`` (else ``POSIdentity/POSItemID``; the other
  way round with ``poslog_item_id = "POSItemID"``); the quantity is ``Quantity`` (decimal for
  weighed items; 1 when absent) in its ``UnitOfMeasureCode``. Every other line item (Tender, Tax,
  LoyaltyReward, vendor extensions) moves nothing.
- A transaction marked cancelled (``CancelFlag="true"``, ``TransactionStatus`` ``Cancelled``,
  ``Voided`` or ``Suspended``) or in training mode (``TrainingModeFlag="true"``) moves nothing;
  so does every ``ControlTransaction`` and any other kind of transaction.
- A transaction with a ``TransactionLink`` whose ``ReasonCode`` is ``PostVoid`` is a post-void of
  the transaction the link names (store, workstation, sequence number, business day): it becomes a
  ``PostVoid`` (the sink adds the reversing movements, also across files); its own line items, if
  any, are copies and move nothing.
- Voided lines, both conventions: a line item with ``VoidFlag="true"`` never moves stock itself
  (the ARTS convention: the voided line is marked). When it has a negative quantity it also cancels
  an earlier, not yet cancelled line of the same kind and item in the same transaction, most recent
  first, exact quantity preferred, partially if need be (the NCR ACS convention: a separate
  negative line voids an earlier positive one).

Invariants:
- Parsed with defusedxml: DTDs, entity declarations and external references are refused (the file
  is quarantined with the reason), so neither entity expansion nor external fetches can happen.
- Streamed: each ``Transaction`` element is processed at its end tag and then removed from the
  tree, so memory is bounded by the largest transaction, not the file; a transaction (or stretch
  between transactions) larger than ``MAX_ELEMENTS`` elements is refused as malformed.
- Elements and attributes are matched by local name: default namespace, ``poslog:`` prefix, no
  namespace and vendor namespaces all read the same.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import iterparse as safe_iterparse

from agent.domain import CaptureIssue, Movement, PostVoid, make_issue_id
from pos_adapters.base import SourceContext
from pos_adapters.lines import LineError, PosLine, normalize_line, parse_decimal, parse_timestamp
from pos_adapters.reading import Chunk, MalformedFile

MAX_ELEMENTS = 200_000
ITEM_ID_FIELDS = ("ItemID", "POSItemID")
NO_STOCK_STATUSES = {"cancelled", "canceled", "voided", "suspended", "suspendeddeleted"}
NON_STOCK_ITEM_TYPES = {"service", "deposit", "giftcertificate"}
_TRUE = {"true", "1", "yes"}


@dataclass(frozen=True, slots=True)
class PoslogOptions:
    """How to read a POSLog export."""

    item_id: str = "ItemID"


_LOCAL_NAMES: dict[str, str] = {}


def local(tag: object) -> str:
    """Return an element or attribute name without its namespace."""
    text = tag if isinstance(tag, str) else str(tag)
    name = _LOCAL_NAMES.get(text)
    if name is None:
        name = text.rsplit("}", 1)[-1] if text.startswith("{") else text.rsplit(":", 1)[-1]
        if len(_LOCAL_NAMES) < 10_000:  # tag names repeat; a hostile file cannot grow this without bound
            _LOCAL_NAMES[text] = name
    return name


def _child(elem: Element, name: str) -> Element | None:
    for child in elem:
        if local(child.tag) == name:
            return child
    return None


def _children(elem: Element, name: str) -> Iterator[Element]:
    for child in elem:
        if local(child.tag) == name:
            yield child


def _text(elem: Element | None, name: str | None = None) -> str:
    if elem is not None and name is not None:
        elem = _child(elem, name)
    return (elem.text or "").strip() if elem is not None else ""


def _attr(elem: Element | None, name: str) -> str:
    if elem is None:
        return ""
    for key, value in elem.attrib.items():
        if local(key) == name:
            return value.strip()
    return ""


def _flag(elem: Element | None, name: str) -> bool:
    """Return True when ``name`` is set as an attribute or a child element of ``elem``."""
    return (_attr(elem, name) or _text(elem, name)).lower() in _TRUE


@dataclass
class _Line:
    seq: int
    kind: str
    item: str
    quantity: Decimal | None
    raw_quantity: str
    unit: str | None
    price: str | None
    void_flag: bool
    element: Element
    cancelled: bool = False
    remaining: Decimal | None = None


@dataclass
class _Result:
    movements: list[Movement] = field(default_factory=list)
    issues: list[CaptureIssue] = field(default_factory=list)
    voids: list[PostVoid] = field(default_factory=list)


def read_poslog(
    path: Path,
    ctx: SourceContext,
    *,
    source: str,
    chunk_rows: int = 2000,
    name: str | None = None,
    options: PoslogOptions | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of the file's movements, post-voids and issues, one transaction at a time."""
    file_name = name or path.name
    opts = options or PoslogOptions()
    chunk = Chunk([], [], 0)
    stack: list[Element] = []
    in_transaction = 0  # Transaction elements currently open
    live = 0  # elements held in memory: open ones plus the current transaction's
    with open(path, "rb") as handle:
        try:
            for event, elem in safe_iterparse(handle, events=("start", "end"), forbid_dtd=True):
                is_transaction = local(elem.tag) == "Transaction"
                if event == "start":
                    stack.append(elem)
                    in_transaction += is_transaction
                    live += 1
                    if live > MAX_ELEMENTS:
                        raise MalformedFile(
                            f"more than {MAX_ELEMENTS:,} XML elements in one transaction (or nested around it); "
                            "this is not a POSLog export possync can read safely"
                        )
                    continue
                stack.pop()
                if is_transaction:
                    in_transaction -= 1
                    chunk.rows += 1
                    result = transaction_results(elem, ctx, source=source, file_name=file_name, options=opts)
                    chunk.movements += result.movements
                    chunk.issues += result.issues
                    chunk.voids += result.voids
                if not in_transaction:
                    # Done with it (a transaction, or whatever sits between transactions): let it go.
                    elem.clear()
                    if stack:
                        stack[-1].remove(elem)
                    live = len(stack)
                    if chunk.size >= chunk_rows:
                        yield chunk
                        chunk = Chunk([], [], chunk.rows)
        except DTDForbidden:
            raise MalformedFile(
                "the file declares a document type (DTD); possync refuses DTDs in POSLog files so that no entity "
                "expansion or external fetch can happen. Export without a DOCTYPE."
            ) from None
        except EntitiesForbidden:
            raise MalformedFile("the file declares XML entities; possync refuses them for safety") from None
        except DefusedXmlException as exc:
            raise MalformedFile(f"the file refers to external resources ({exc}); refused for safety") from None
        except LookupError as exc:  # the XML declaration names an encoding Python has no codec for
            raise MalformedFile(
                f"the XML declaration names a text encoding possync does not know ({exc}); export as UTF-8"
            ) from None
        except ParseError as exc:
            what = "the file is empty or not XML" if "no element found" in str(exc) else "not well-formed XML"
            raise MalformedFile(f"{what} ({exc}); {chunk.rows} transaction(s) were read before it") from None
    yield chunk


def transaction_id(store: str, workstation: str, sequence: str, day: date) -> str:
    """Return possync's id of a POSLog transaction: ``store-workstation-sequence-YYYYMMDD``."""
    return f"{store or '0'}-{workstation or '0'}-{sequence}-{day:%Y%m%d}"


def transaction_results(
    txn: Element, ctx: SourceContext, *, source: str, file_name: str, options: PoslogOptions
) -> _Result:
    """Turn one ``Transaction`` element into movements, post-voids and issues."""
    out = _Result()
    bodies = [c for c in txn if local(c.tag).endswith("Transaction") and local(c.tag) != "Transaction"]
    body = bodies[0] if bodies else None
    if _flag(txn, "TrainingModeFlag") or _flag(body, "TrainingModeFlag"):
        return out
    status = (
        _attr(txn, "TransactionStatus")
        or _attr(body, "TransactionStatus")
        or _text(txn, "TransactionStatus")
        or _text(body, "TransactionStatus")
    )
    if _flag(txn, "CancelFlag") or _flag(body, "CancelFlag") or re.sub(r"\W", "", status.lower()) in NO_STOCK_STATUSES:
        return out
    links = [*_children(txn, "TransactionLink"), *(_children(body, "TransactionLink") if body is not None else [])]
    post_void = next((link for link in links if _is_post_void(link)), None)
    is_retail = body is not None and local(body.tag) == "RetailTransaction"
    if post_void is None and not is_retail:
        return out
    store = _text(txn, "RetailStoreID")
    workstation = _text(txn, "WorkstationID")
    sequence = _text(txn, "SequenceNumber")
    when = _text(txn, "EndDateTime") or _text(txn, "BeginDateTime") or _text(body, "ReceiptDateTime")
    where = f"{file_name} transaction {store or '?'}/{workstation or '?'}/{sequence or '?'}"
    try:
        if not sequence:
            raise LineError("MISSING_FIELD", "the transaction has no SequenceNumber")
        occurred_at = parse_timestamp(when, ctx)
        day_text = _text(txn, "BusinessDayDate")
        try:
            day = date.fromisoformat(day_text[:10]) if day_text else occurred_at.astimezone(ctx.timezone).date()
        except ValueError:
            raise LineError("BAD_DATE", f"BusinessDayDate {day_text[:40]!r} is not a date (YYYY-MM-DD)") from None
    except LineError as exc:
        out.issues.append(_issue(source, where, exc, txn, None))
        return out
    txn_id = transaction_id(store, workstation, sequence, day)
    ref = f"{file_name} transaction {txn_id}"
    if post_void is not None:
        _post_void(post_void, txn_id, store, workstation, day, occurred_at, ctx, source, ref, out)
        return out
    assert body is not None
    lines = _net_voids(list(_line_items(body, options)))
    for line in lines:
        if line.cancelled or line.void_flag:
            continue
        pos_line = PosLine(
            pos_transaction_id=txn_id,
            line_no=line.seq,
            occurred_at=occurred_at,
            kind=line.kind,
            item=line.item,
            quantity=line.remaining if line.remaining is not None else line.raw_quantity,
            unit=line.unit,
            terminal_id=workstation or None,
            business_day=day,
            unit_price=line.price,
            currency=_text(txn, "CurrencyCode") or None,
        )
        result = normalize_line(pos_line, ctx, source=source, source_ref=f"{ref} line {line.seq}")
        if isinstance(result, Movement):
            out.movements.append(result)
        elif isinstance(result, CaptureIssue):
            out.issues.append(dataclasses.replace(result, raw=_raw(line.element)))  # serialised only when needed
    return out


def _is_post_void(link: Element) -> bool:
    reason = _attr(link, "ReasonCode") or _text(link, "ReasonCode")
    return re.sub(r"[^a-z]", "", reason.lower()) in ("postvoid", "postvoided")


def _post_void(
    link: Element,
    txn_id: str,
    store: str,
    workstation: str,
    day: date,
    occurred_at: datetime,
    ctx: SourceContext,
    source: str,
    ref: str,
    out: _Result,
) -> None:
    voided_ws = _text(link, "WorkstationID") or workstation
    voided_seq = _text(link, "SequenceNumber")
    day_text = _text(link, "BusinessDayDate")
    try:
        if not voided_seq:
            raise LineError("BAD_VOID", "the post-void's TransactionLink names no SequenceNumber")
        try:
            voided_day = date.fromisoformat(day_text[:10]) if day_text else day
        except ValueError:
            raise LineError(
                "BAD_VOID", f"the TransactionLink's BusinessDayDate {day_text[:40]!r} is not a date"
            ) from None
    except LineError as exc:
        out.issues.append(_issue(source, ref, exc, link, txn_id))
        return
    out.voids.append(
        PostVoid(
            store_id=ctx.store_id,
            pos_transaction_id=txn_id,
            terminal_id=workstation,
            business_day=day,
            occurred_at=occurred_at,
            voided_transaction_id=transaction_id(
                _text(link, "RetailStoreID") or store, voided_ws, voided_seq, voided_day
            ),
            voided_terminal_id=voided_ws or None,
            voided_business_day=voided_day,
            source=source,
            source_ref=ref,
        )
    )


def _line_items(body: Element, options: PoslogOptions) -> Iterator[_Line]:
    order = ITEM_ID_FIELDS if options.item_id == "ItemID" else tuple(reversed(ITEM_ID_FIELDS))
    for position, item in enumerate(_children(body, "LineItem"), start=1):
        detail = next((c for c in item if local(c.tag) in ("Sale", "Return")), None)
        if detail is None or _attr(detail, "ItemType").lower() in NON_STOCK_ITEM_TYPES:
            continue
        ids = {"ItemID": _text(detail, "ItemID"), "POSItemID": _text(_child(detail, "POSIdentity"), "POSItemID")}
        quantity_elem = _child(detail, "Quantity")
        raw_quantity = _text(quantity_elem) or _attr(quantity_elem, "Units") or "1"
        try:
            quantity: Decimal | None = parse_decimal(raw_quantity, "quantity")
        except LineError:
            quantity = None
        seq_text = _text(item, "SequenceNumber")
        price = _text(detail, "ActualSalesUnitPrice") or _text(detail, "RegularSalesUnitPrice")
        yield _Line(
            seq=int(seq_text) if seq_text.isdecimal() else position,
            kind="sale" if local(detail.tag) == "Sale" else "return",
            item=next((ids[f] for f in order if ids[f]), ""),
            quantity=quantity,
            raw_quantity=raw_quantity,
            unit=_attr(quantity_elem, "UnitOfMeasureCode") or None,
            price=price or None,
            void_flag=_flag(item, "VoidFlag") or _flag(detail, "VoidFlag"),
            element=item,
        )


def _net_voids(lines: list[_Line]) -> list[_Line]:
    """Apply NCR-style void lines (negative, ``VoidFlag``) to the earlier lines they cancel."""
    for i, void in enumerate(lines):
        if not void.void_flag or void.quantity is None or void.quantity >= 0:
            continue
        owed = -void.quantity
        candidates = [
            line
            for line in reversed(lines[:i])
            if not line.void_flag
            and not line.cancelled
            and line.kind == void.kind
            and line.item == void.item
            and line.quantity is not None
            and line.quantity > 0
        ]
        exact = next((c for c in candidates if (c.remaining if c.remaining is not None else c.quantity) == owed), None)
        for line in [exact] if exact is not None else candidates:
            assert line is not None and line.quantity is not None
            have = line.remaining if line.remaining is not None else line.quantity
            take = min(have, owed)
            line.remaining = have - take
            line.cancelled = line.remaining == 0
            owed -= take
            if owed == 0:
                break
    return lines


def _raw(elem: Element) -> str:
    text = tostring(elem, encoding="unicode")
    return re.sub(r"\s*xmlns(:\w+)?=\"[^\"]*\"", "", text)[:4000]


def _issue(source: str, where: str, exc: LineError, elem: Element, txn_id: str | None) -> CaptureIssue:
    return CaptureIssue(
        issue_id=make_issue_id(source, where),
        source=source,
        source_ref=where,
        code=exc.code,
        message=str(exc),
        pos_transaction_id=txn_id,
        raw=_raw(elem) if local(elem.tag) != "Transaction" else _raw_header(elem),
    )


def _raw_header(txn: Element) -> str:
    """Return the transaction's own fields, without its (possibly long) line items."""
    parts = [_raw(c) for c in txn if len(c) == 0]
    return "".join(parts)[:4000]
