"""The shared vocabulary of possync: movements, delivery outcomes, stock levels, item master.

Invariants:
- This module imports nothing from the project; every package may import it.
- A ``Movement`` is one stock-affecting POS line, already normalised. Its ``event_id`` depends only on
  (store_id, pos_transaction_id, line_no, kind), so the same POS line captured twice, by the same or
  another source, always gets the same id.
- Quantities are ``Decimal``; they are positive for every kind except ``adjustment``, whose sign is
  the direction of the correction.
- ``sku is None`` means the item is not (yet) in the item master: the movement is kept, parked in the
  exception queue, and mapped when the item master knows it.
- A ``PostVoid`` is a fact ("transaction X is void"), not a movement: the runtime turns it into the
  reversing movements of every line of X it has captured or will capture.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

EVENT_NAMESPACE = uuid.UUID("6f0e6a52-3d1c-5a4e-9b7f-2c1d0a9e8b31")


class Kind(StrEnum):
    """What a movement does to the store's stock."""

    SALE = "sale"
    RETURN = "return"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    ADJUSTMENT = "adjustment"


class Disposition(StrEnum):
    """Where a returned item goes: back on the shelf, or set aside."""

    SELLABLE = "sellable"
    DAMAGED = "damaged"
    HOLD = "hold"


class Outcome(StrEnum):
    """The three ends of a delivery attempt, per event (plus duplicate, a kind of delivered)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    RETRY = "retry"


def make_event_id(store_id: str, pos_transaction_id: str, line_no: int, kind: Kind | str) -> str:
    """Return the deterministic idempotency key of one POS line."""
    key = "\x1f".join((store_id, pos_transaction_id, str(line_no), str(kind)))
    return str(uuid.uuid5(EVENT_NAMESPACE, key))


def make_issue_id(source: str, where: str) -> str:
    """Return the deterministic id of a capture problem, so a re-read file does not repeat it."""
    return hashlib.sha256(f"{source}\x1f{where}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Movement:
    """One stock-affecting POS line, normalised; the unit of capture, storage and delivery."""

    event_id: str
    store_id: str
    terminal_id: str
    pos_transaction_id: str
    line_no: int
    business_day: date
    occurred_at: datetime
    kind: Kind
    sku: str | None
    raw_item_id: str
    quantity: Decimal
    unit: str | None
    original_quantity: Decimal
    original_unit: str | None
    location: str
    counterpart_location: str | None = None
    disposition: Disposition | None = None
    unit_price: Decimal | None = None
    currency: str | None = None
    source: str = ""
    source_ref: str = ""
    # The movement's JSON text once known (encoded, or read back from the outbox), so a movement is
    # not encoded again on every delivery attempt. Not a field of the movement's value.
    _json: str | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    @property
    def is_mapped(self) -> bool:
        """True once the item is resolved to a canonical SKU and base-unit quantity."""
        return self.sku is not None

    def stock_delta(self) -> Decimal:
        """Return the change this movement makes to sellable on-hand stock at ``location``."""
        if self.kind is Kind.SALE or self.kind is Kind.TRANSFER_OUT:
            return -self.quantity
        if self.kind is Kind.RETURN:
            sellable = self.disposition in (None, Disposition.SELLABLE)
            return self.quantity if sellable else Decimal(0)
        return self.quantity  # transfer_in adds; adjustment carries its own sign

    def mapped(self, sku: str, quantity: Decimal, unit: str) -> Movement:
        """Return a copy resolved to a canonical SKU and base-unit quantity."""
        # Spelled out rather than dataclasses.replace: this runs for every captured line.
        return Movement(
            self.event_id,
            self.store_id,
            self.terminal_id,
            self.pos_transaction_id,
            self.line_no,
            self.business_day,
            self.occurred_at,
            self.kind,
            sku,
            self.raw_item_id,
            quantity,
            unit,
            self.original_quantity,
            self.original_unit,
            self.location,
            self.counterpart_location,
            self.disposition,
            self.unit_price,
            self.currency,
            self.source,
            self.source_ref,
        )

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON-ready form used on the WMS protocol and in the outbox."""
        return {
            "event_id": self.event_id,
            "store_id": self.store_id,
            "terminal_id": self.terminal_id,
            "pos_transaction_id": self.pos_transaction_id,
            "line_no": self.line_no,
            "business_day": self.business_day.isoformat(),
            "occurred_at": self.occurred_at.isoformat(),
            "kind": self.kind.value,
            "sku": self.sku,
            "raw_item_id": self.raw_item_id,
            "quantity": _dec(self.quantity),
            "unit": self.unit,
            "original_quantity": _dec(self.original_quantity),
            "original_unit": self.original_unit,
            "location": self.location,
            "counterpart_location": self.counterpart_location,
            "disposition": self.disposition.value if self.disposition else None,
            "unit_price": _dec(self.unit_price) if self.unit_price is not None else None,
            "currency": self.currency,
            "source": self.source,
            "source_ref": self.source_ref,
        }

    def to_json(self) -> str:
        """Return the compact JSON text of ``to_wire()`` (computed once per movement object)."""
        text = self._json
        if text is None:
            text = self._encode()
            object.__setattr__(self, "_json", text)
        return text

    def _encode(self) -> str:
        # Exactly ``json.dumps(self.to_wire(), separators=(",", ":"))``, built directly: a file chunk
        # of 2,000 lines spent half its enqueue time there, the dict plus the generic encoder.
        price = self.unit_price
        disposition = self.disposition
        return (
            f'{{"event_id":{_str(self.event_id)},"store_id":{_str(self.store_id)},'
            f'"terminal_id":{_str(self.terminal_id)},"pos_transaction_id":{_str(self.pos_transaction_id)},'
            f'"line_no":{"null" if self.line_no is None else int(self.line_no)},'
            f'"business_day":"{self.business_day.isoformat()}",'
            f'"occurred_at":"{self.occurred_at.isoformat()}","kind":"{self.kind.value}",'
            f'"sku":{_opt(self.sku)},"raw_item_id":{_str(self.raw_item_id)},'
            f'"quantity":"{_dec(self.quantity)}","unit":{_opt(self.unit)},'
            f'"original_quantity":"{_dec(self.original_quantity)}","original_unit":{_opt(self.original_unit)},'
            f'"location":{_str(self.location)},"counterpart_location":{_opt(self.counterpart_location)},'
            f'"disposition":{_opt(disposition.value if disposition else None)},'
            f'"unit_price":{"null" if price is None else _str(_dec(price))},"currency":{_opt(self.currency)},'
            f'"source":{_str(self.source)},"source_ref":{_str(self.source_ref)}}}'
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Movement:
        """Rebuild a movement from ``to_wire()`` output (raises KeyError/ValueError if malformed)."""
        price = data.get("unit_price")
        disposition = data.get("disposition")
        return cls(
            event_id=data["event_id"],
            store_id=data["store_id"],
            terminal_id=data["terminal_id"],
            pos_transaction_id=data["pos_transaction_id"],
            line_no=int(data["line_no"]),
            business_day=date.fromisoformat(data["business_day"]),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            kind=Kind(data["kind"]),
            sku=data.get("sku"),
            raw_item_id=data["raw_item_id"],
            quantity=Decimal(data["quantity"]),
            unit=data.get("unit"),
            original_quantity=Decimal(data["original_quantity"]),
            original_unit=data.get("original_unit"),
            location=data["location"],
            counterpart_location=data.get("counterpart_location"),
            disposition=Disposition(disposition) if disposition else None,
            unit_price=Decimal(price) if price is not None else None,
            currency=data.get("currency"),
            source=data.get("source", ""),
            source_ref=data.get("source_ref", ""),
        )

    @classmethod
    def from_json(cls, text: str) -> Movement:
        """Rebuild a movement from ``to_json()`` output; ``to_json()`` then returns ``text`` as it is."""
        movement = cls.from_wire(json.loads(text))
        object.__setattr__(movement, "_json", text)
        return movement


_str = json.encoder.encode_basestring_ascii  # the encoder's own string quoting (C), hence identical output


def _opt(value: str | None) -> str:
    """Return a JSON string, or ``null``."""
    return "null" if value is None else _str(value)


def _dec(value: Decimal) -> str:
    """Format a Decimal without exponent and without needless trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class CaptureIssue:
    """A POS line that needs a person, with the reason in words.

    Without ``event_id`` the line could not be turned into a movement at all (the raw text is kept);
    with one, it names a stored movement that is held until the problem is fixed (unknown item).
    """

    issue_id: str
    source: str
    source_ref: str
    code: str
    message: str
    pos_transaction_id: str | None = None
    line_no: int | None = None
    raw_item_id: str | None = None
    raw: str = ""
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class PostVoid:
    """A POS transaction that voids an earlier, completed one (a post-void).

    ``pos_transaction_id`` is the post-void's own transaction; ``voided_*`` name the transaction it
    voids (terminal and business day narrow the match when given). Its reversing movements get
    event ids from (store, the post-void's own transaction id, line, reversed kind), so a post-void
    read twice reverses once.
    """

    store_id: str
    pos_transaction_id: str
    terminal_id: str
    business_day: date
    occurred_at: datetime
    voided_transaction_id: str
    voided_terminal_id: str | None = None
    voided_business_day: date | None = None
    source: str = ""
    source_ref: str = ""

    def matches(self, movement: Movement) -> bool:
        """Return True if ``movement`` is a line of the transaction this post-void voids."""
        return (
            movement.pos_transaction_id == self.voided_transaction_id
            and (self.voided_terminal_id in (None, "") or movement.terminal_id == self.voided_terminal_id)
            and (self.voided_business_day is None or movement.business_day == self.voided_business_day)
        )

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON-ready form the outbox stores."""
        return {
            "store_id": self.store_id,
            "pos_transaction_id": self.pos_transaction_id,
            "terminal_id": self.terminal_id,
            "business_day": self.business_day.isoformat(),
            "occurred_at": self.occurred_at.isoformat(),
            "voided_transaction_id": self.voided_transaction_id,
            "voided_terminal_id": self.voided_terminal_id,
            "voided_business_day": self.voided_business_day.isoformat() if self.voided_business_day else None,
            "source": self.source,
            "source_ref": self.source_ref,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PostVoid:
        """Rebuild a post-void from ``to_wire()`` output."""
        voided_day = data.get("voided_business_day")
        return cls(
            store_id=data["store_id"],
            pos_transaction_id=data["pos_transaction_id"],
            terminal_id=data["terminal_id"],
            business_day=date.fromisoformat(data["business_day"]),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            voided_transaction_id=data["voided_transaction_id"],
            voided_terminal_id=data.get("voided_terminal_id"),
            voided_business_day=date.fromisoformat(voided_day) if voided_day else None,
            source=data.get("source", ""),
            source_ref=data.get("source_ref", ""),
        )


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a source resumes: an opaque JSON-ready value stored with the batch it follows."""

    key: str
    value: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EventResult:
    """What the WMS said about one event."""

    event_id: str
    outcome: Outcome
    code: str | None = None
    message: str | None = None
    position: int | None = None  # where the WMS applied it, comparable with ``Snapshot.version``


@dataclass(frozen=True, slots=True)
class PushReport:
    """The result of one ``push``: per-event results plus what the batch as a whole ran into.

    ``auth_failed`` means the WMS refused our credentials (delivery pauses). ``split`` means the WMS
    refused the batch as a whole with a permanent error that names no event, so the caller retries
    smaller batches to find the offending event. ``retry_after`` is the server's requested delay.
    """

    results: list[EventResult]
    auth_failed: bool = False
    split: bool = False
    retry_after: float | None = None
    error: str | None = None
    http_status: int | None = None
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item of the WMS item master, as the agent caches it for mapping POS item ids."""

    sku: str
    description: str = ""
    base_unit: str = "EA"
    units: Mapping[str, Decimal] = field(default_factory=dict)
    barcodes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    status: str = "active"


@dataclass(frozen=True, slots=True)
class StockLevel:
    """Stock of one SKU at one location as the WMS reported it in a snapshot."""

    sku: str
    location: str
    on_hand: Decimal
    allocated: Decimal = Decimal(0)
    available: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A versioned stock snapshot of one store; a lower version never replaces a higher one.

    ``version`` is the WMS's high-water mark of applied events: an event whose ack carried a
    ``position`` at or below it is already in these levels; one above it is not yet.
    """

    store_id: str
    version: int
    as_of: datetime
    levels: list[StockLevel]


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Parse ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '5m', '1h' or '2d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = next((u for u in ("ms", "s", "m", "h", "d") if text.endswith(u)), "")
        number = text[: len(text) - len(unit)].strip() if unit else text
        try:
            seconds = float(number) * _DURATION_UNITS.get(unit, 1.0)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration; write it as '30s', '5m', '1h' or '2d'") from None
    else:
        raise ValueError("expected a duration such as '30s', '5m', '1h' or '2d'")
    if seconds < 0 or seconds != seconds:
        raise ValueError("a duration cannot be negative")
    return seconds


SECRET_SCHEMES = ("keyring:", "env:", "file:")


def check_secret_ref(value: str) -> str:
    """Accept only a reference to a secret (``keyring:``, ``env:``, ``file:``), never the secret."""
    if not value.startswith(SECRET_SCHEMES) or len(value.split(":", 1)[1]) == 0:
        raise ValueError(
            "secrets are never written in the config file; use 'keyring:SERVICE/USER' "
            "(stored with 'keyring set SERVICE USER'), 'env:VARIABLE' or 'file:/path/to/secret'"
        )
    return value


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds (seconds or HTTP-date)."""
    import email.utils
    import time

    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
