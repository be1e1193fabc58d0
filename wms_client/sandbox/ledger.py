"""The sandbox WMS's own SQLite ledger: items, stock, and every movement it applied.

Invariants:
- An event is applied at most once: ``ledger.event_id`` is unique, and a re-sent event answers
  ``duplicate`` with the time and ledger ``seq`` it was first accepted at; nothing is applied again.
- ``seq`` is the ledger position of an applied event; a snapshot at ``version`` V includes exactly
  the events with ``seq <= V``.
- Rejected events are not applied and not remembered as applied: sent again after the cause is
  fixed (an item added), they are judged again.
- Quantities are stored as integers of 1/10,000 of the base unit so SQL sums are exact.
- A stock snapshot is pinned to a ledger version: paging through it while sales keep arriving
  still returns one consistent picture.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

SCALE = 10_000
KINDS = frozenset({"sale", "return", "transfer_out", "transfer_in", "adjustment"})
DISPOSITIONS = frozenset({"sellable", "damaged", "hold"})
WHOLE_UNITS = frozenset({"EA", "PC", "PCS", "CS", "EACH", "UNIT"})
MAX_QUANTITY = Decimal(1_000_000)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    sku TEXT PRIMARY KEY, description TEXT NOT NULL, base_unit TEXT NOT NULL,
    units TEXT NOT NULL, barcodes TEXT NOT NULL, aliases TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS location (code TEXT PRIMARY KEY, store_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT NOT NULL, location TEXT NOT NULL, on_hand INTEGER NOT NULL,
    allocated INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (sku, location));
CREATE TABLE IF NOT EXISTS initial_stock (
    sku TEXT NOT NULL, location TEXT NOT NULL, on_hand INTEGER NOT NULL, PRIMARY KEY (sku, location));
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, store_id TEXT NOT NULL,
    kind TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL, counterpart_location TEXT,
    stock_location TEXT NOT NULL, quantity INTEGER NOT NULL, delta INTEGER NOT NULL,
    pos_transaction_id TEXT, line_no INTEGER, business_day TEXT, occurred_at TEXT,
    accepted_at TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejection (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT, code TEXT NOT NULL, message TEXT NOT NULL,
    at TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class EventVerdict:
    """The sandbox's answer for one event."""

    event_id: str
    status: str  # accepted | duplicate | rejected
    code: str | None = None
    message: str | None = None
    accepted_at: str | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the protocol's per-event result object."""
        out: dict[str, Any] = {"event_id": self.event_id, "status": self.status}
        if self.code:
            out["code"] = self.code
            out["message"] = self.message
        if self.accepted_at:
            out["accepted_at"] = self.accepted_at
        if self.seq is not None:
            out["seq"] = self.seq
        return out


class Rejected(ValueError):
    """An event the sandbox refuses, with a protocol code."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the code next to the message."""
        super().__init__(message)
        self.code = code


def to_units(value: Decimal) -> int:
    """Convert a Decimal quantity to integer 1/10,000 units."""
    return int(value * SCALE)


def from_units(units: int) -> str:
    """Convert integer units back to a normalised decimal string."""
    text = format((Decimal(units) / SCALE).normalize(), "f")
    return "0" if text in ("-0", "") else text


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """The sandbox WMS's state in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open or create the ledger at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.closed_locations: set[str] = set()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # -- master data -------------------------------------------------------------------------

    def load_items_csv(self, path: Path) -> int:
        """Load the item master (and, for a new ledger, the opening stock) from an items CSV.

        Columns: sku, description, barcodes (``|``-separated), base_unit, case_qty, location,
        on_hand. A SKU may appear on several rows, one per location.
        """
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        required = {"sku", "base_unit", "location", "on_hand"}
        missing = required - set(rows[0] if rows else {})
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            fresh = cur.execute("SELECT COUNT(*) FROM stock").fetchone()[0] == 0
            for row in rows:
                sku = row["sku"].strip()
                base = (row.get("base_unit") or "EA").strip().upper()
                case_qty = Decimal((row.get("case_qty") or "1").strip() or "1")
                units = {base: "1", "CS": str(case_qty)} if base != "CS" else {"CS": "1"}
                codes = [c.strip() for c in (row.get("barcodes") or "").split("|") if c.strip()]
                barcodes = [c for c in codes if c.isdigit()]
                aliases = [c for c in codes if not c.isdigit()]
                cur.execute(
                    "INSERT OR REPLACE INTO item VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        sku,
                        (row.get("description") or "").strip(),
                        base,
                        json.dumps(units),
                        json.dumps(barcodes),
                        json.dumps(aliases),
                        (row.get("status") or "active").strip() or "active",
                    ),
                )
                location = row["location"].strip()
                store = location.split(":", 1)[0]
                for code in (location, f"{store}:damaged", f"{store}:hold"):
                    cur.execute("INSERT OR IGNORE INTO location VALUES (?, ?)", (code, store))
                if fresh:
                    on_hand = to_units(Decimal(row["on_hand"].strip() or "0"))
                    cur.execute("INSERT OR REPLACE INTO stock VALUES (?, ?, ?, 0)", (sku, location, on_hand))
                    cur.execute("INSERT OR REPLACE INTO initial_stock VALUES (?, ?, ?)", (sku, location, on_hand))
            cur.execute("COMMIT")
        return len(rows)

    def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Add or replace items at run time (sku, description, base_unit, units, barcodes, aliases, status)."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            for item in items:
                base = str(item.get("base_unit") or "EA").upper()
                cur.execute(
                    "INSERT OR REPLACE INTO item VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(item["sku"]),
                        str(item.get("description") or ""),
                        base,
                        json.dumps({str(k): str(v) for k, v in dict(item.get("units") or {base: "1"}).items()}),
                        json.dumps([str(b) for b in item.get("barcodes") or []]),
                        json.dumps([str(a) for a in item.get("aliases") or []]),
                        str(item.get("status") or "active"),
                    ),
                )
            cur.execute("COMMIT")
        return len(items)

    def items_page(self, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Return one page of the item master, ordered by SKU, and the next page token."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sku, description, base_unit, units, barcodes, aliases, status FROM item "
                "WHERE sku > ? ORDER BY sku LIMIT ?",
                (after or "", limit + 1),
            ).fetchall()
        items = [
            {
                "sku": r[0],
                "description": r[1],
                "base_unit": r[2],
                "units": json.loads(r[3]),
                "barcodes": json.loads(r[4]),
                "aliases": json.loads(r[5]),
                "status": r[6],
            }
            for r in rows[:limit]
        ]
        return items, (items[-1]["sku"] if len(rows) > limit else None)

    # -- movements ---------------------------------------------------------------------------

    def apply(self, store_id: str, events: Sequence[Any]) -> list[EventVerdict]:
        """Validate and apply a batch in one transaction; return one verdict per event, in order."""
        verdicts: list[EventVerdict] = []
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                ids = [e.get("event_id") for e in events if isinstance(e, dict)]
                originals = self._originals(cur, [i for i in ids if isinstance(i, str)])
                seen_now: dict[str, tuple[str, int]] = {}
                for event in events:
                    verdicts.append(self._apply_one(cur, store_id, event, originals, seen_now))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return verdicts

    def _originals(self, cur: sqlite3.Cursor, ids: list[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = cur.execute(
                f"SELECT event_id, accepted_at, seq FROM ledger WHERE event_id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchall()
            found.update({event_id: (at, int(seq)) for event_id, at, seq in rows})
        return found

    def _apply_one(
        self,
        cur: sqlite3.Cursor,
        store_id: str,
        event: Any,
        originals: Mapping[str, tuple[str, int]],
        seen_now: dict[str, tuple[str, int]],
    ) -> EventVerdict:
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
            return self._reject(cur, None, "INVALID_EVENT", "event_id must be a non-empty string")
        if event_id in originals or event_id in seen_now:
            at, seq = originals.get(event_id) or seen_now[event_id]
            return EventVerdict(event_id, "duplicate", accepted_at=at, seq=seq)
        try:
            kind, sku, location, stock_location, quantity, delta = self._validate(cur, store_id, event)
        except Rejected as exc:
            return self._reject(cur, event_id, exc.code, str(exc))
        accepted_at = _now()
        cur.execute(
            "INSERT INTO ledger (event_id, store_id, kind, sku, location, counterpart_location, "
            "stock_location, quantity, delta, pos_transaction_id, line_no, business_day, occurred_at, "
            "accepted_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                store_id,
                kind,
                sku,
                location,
                event.get("counterpart_location"),
                stock_location,
                quantity,
                delta,
                str(event.get("pos_transaction_id") or ""),
                event.get("line_no") if isinstance(event.get("line_no"), int) else None,
                str(event.get("business_day") or ""),
                str(event.get("occurred_at") or ""),
                accepted_at,
                json.dumps(event, separators=(",", ":")),
            ),
        )
        seq = int(cur.lastrowid or 0)
        cur.execute(
            "INSERT INTO stock (sku, location, on_hand) VALUES (?, ?, ?) "
            "ON CONFLICT (sku, location) DO UPDATE SET on_hand = on_hand + excluded.on_hand",
            (sku, stock_location, delta),
        )
        seen_now[event_id] = (accepted_at, seq)
        return EventVerdict(event_id, "accepted", accepted_at=accepted_at, seq=seq)

    def _validate(
        self, cur: sqlite3.Cursor, store_id: str, event: Mapping[str, Any]
    ) -> tuple[str, str, str, str, int, int]:
        if event.get("store_id") != store_id:
            raise Rejected("STORE_MISMATCH", f"event is for store {event.get('store_id')!r}, sent to {store_id!r}")
        kind = event.get("kind")
        if kind not in KINDS:
            raise Rejected("INVALID_EVENT", f"kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
        sku = event.get("sku")
        if not isinstance(sku, str) or not sku:
            raise Rejected("UNKNOWN_SKU", "the event names no SKU")
        item = cur.execute("SELECT base_unit, status FROM item WHERE sku = ?", (sku,)).fetchone()
        if item is None:
            raise Rejected("UNKNOWN_SKU", f"SKU {sku!r} is not in the WMS item master")
        if item[1] != "active":
            raise Rejected("ITEM_INACTIVE", f"SKU {sku!r} is {item[1]} in the WMS and cannot move")
        try:
            quantity = Decimal(str(event.get("quantity")))
        except (InvalidOperation, ValueError):
            raise Rejected("BAD_QUANTITY", f"quantity {event.get('quantity')!r} is not a number") from None
        if not quantity.is_finite() or abs(quantity) > MAX_QUANTITY:
            raise Rejected("BAD_QUANTITY", f"quantity {event.get('quantity')!r} is out of range")
        if kind == "adjustment" and quantity == 0:
            raise Rejected("BAD_QUANTITY", "an adjustment of zero moves nothing")
        if kind != "adjustment" and quantity <= 0:
            raise Rejected("BAD_QUANTITY", f"quantity must be positive for a {kind}, got {quantity}")
        if quantity != quantity.quantize(Decimal("0.0001")):
            raise Rejected("BAD_QUANTITY", f"quantity {quantity} has more than 4 decimal places")
        if item[0] in WHOLE_UNITS and quantity != quantity.to_integral_value():
            raise Rejected("BAD_QUANTITY", f"quantity {quantity} is not a whole number of {item[0]}")
        location = event.get("location")
        if not isinstance(location, str) or location.split(":", 1)[0] != store_id:
            raise Rejected("UNKNOWN_LOCATION", f"location {location!r} does not belong to store {store_id}")
        if not self._known_location(cur, location):
            raise Rejected("UNKNOWN_LOCATION", f"location {location!r} is not known to the WMS")
        if location in self.closed_locations:
            raise Rejected("LOCATION_CLOSED", f"location {location!r} is closed for movements")
        counterpart = event.get("counterpart_location")
        if kind in ("transfer_out", "transfer_in"):
            if not isinstance(counterpart, str) or not counterpart:
                raise Rejected("MISSING_COUNTERPART", f"a {kind} must name counterpart_location")
            if not self._known_location(cur, counterpart):
                raise Rejected("UNKNOWN_LOCATION", f"counterpart location {counterpart!r} is not known")
        disposition = event.get("disposition") or "sellable"
        if disposition not in DISPOSITIONS:
            raise Rejected("INVALID_EVENT", f"disposition {disposition!r} is not one of sellable, damaged, hold")
        units = to_units(quantity)
        stock_location = location
        if kind in ("sale", "transfer_out"):
            delta = -units
        elif kind == "return" and disposition != "sellable":
            stock_location, delta = f"{store_id}:{disposition}", units
        else:
            delta = units
        return kind, sku, location, stock_location, units, delta

    @staticmethod
    def _known_location(cur: sqlite3.Cursor, code: str) -> bool:
        return cur.execute("SELECT 1 FROM location WHERE code = ?", (code,)).fetchone() is not None

    @staticmethod
    def _reject(cur: sqlite3.Cursor, event_id: str | None, code: str, message: str) -> EventVerdict:
        cur.execute(
            "INSERT INTO rejection (event_id, code, message, at) VALUES (?, ?, ?, ?)", (event_id, code, message, _now())
        )
        return EventVerdict(event_id or "", "rejected", code=code, message=message)

    # -- reads -------------------------------------------------------------------------------

    def version(self) -> int:
        """Return the ledger version: the sequence number of the last applied event."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0])

    def stock_page(
        self, store_id: str, version: int, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None, str]:
        """Return one page of the store's stock as it was at ``version``."""
        after_sku, after_loc = after or ("", "")
        with self._lock:
            rows = self._db.execute(
                "SELECT sku, location, on_hand, allocated FROM stock "
                "WHERE (location = ? OR location LIKE ?) AND (sku, location) > (?, ?) "
                "ORDER BY sku, location LIMIT ?",
                (store_id, f"{store_id}:%", after_sku, after_loc, limit + 1),
            ).fetchall()
            later = {
                (sku, loc): int(total)
                for sku, loc, total in self._db.execute(
                    "SELECT sku, stock_location, SUM(delta) FROM ledger WHERE seq > ? GROUP BY sku, stock_location",
                    (version,),
                )
            }
            as_of_row = self._db.execute(
                "SELECT accepted_at FROM ledger WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (version,)
            ).fetchone()
        items = []
        for sku, location, on_hand, allocated in rows[:limit]:
            at_version = on_hand - later.get((sku, location), 0)
            items.append(
                {
                    "sku": sku,
                    "location": location,
                    "on_hand": from_units(at_version),
                    "allocated": from_units(allocated),
                    "available": from_units(at_version - allocated),
                }
            )
        nxt = (items[-1]["sku"], items[-1]["location"]) if len(rows) > limit else None
        return items, nxt, as_of_row[0] if as_of_row else _now()

    def ledger_rows(self, after: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Return applied events in order (for reconciliation and tests)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, kind, sku, location, stock_location, quantity, delta, "
                "pos_transaction_id, line_no, business_day, accepted_at FROM ledger "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        keys = (
            "seq", "event_id", "kind", "sku", "location", "stock_location", "quantity", "delta",
            "pos_transaction_id", "line_no", "business_day", "accepted_at",
        )  # fmt: skip
        out = []
        for row in rows:
            record = dict(zip(keys, row, strict=True))
            record["quantity"] = from_units(record["quantity"])
            record["delta"] = from_units(record["delta"])
            out.append(record)
        return out

    def all_stock(self) -> list[dict[str, Any]]:
        """Return every stock row with its opening quantity (for reconciliation and tests)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.sku, s.location, s.on_hand, COALESCE(i.on_hand, 0) FROM stock s "
                "LEFT JOIN initial_stock i ON i.sku = s.sku AND i.location = s.location "
                "ORDER BY s.sku, s.location"
            ).fetchall()
        return [{"sku": r[0], "location": r[1], "on_hand": from_units(r[2]), "opening": from_units(r[3])} for r in rows]

    def stats(self) -> dict[str, int]:
        """Return counters of applied and rejected events."""
        with self._lock:
            applied = self._db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
            rejected = self._db.execute("SELECT COUNT(*) FROM rejection").fetchone()[0]
        return {"applied": int(applied), "rejected": int(rejected)}
