"""The store stock view: the newest WMS snapshot plus the local movements it does not include yet.

Invariants:
- A snapshot replaces the stored one in one transaction, and only if its ``version`` is higher: a
  stale snapshot (an older pull that finished late) never overwrites a newer one. The same version
  again only refreshes ``pulled_at``.
- ``effective = snapshot.on_hand + pending``, where ``pending`` sums the stock delta of every mapped
  movement that is not acked (ready, in flight, or rejected and still waiting for a person), plus
  every acked movement whose ``wms_position`` is above the snapshot's version (the WMS applied it
  after the snapshot was taken). An acked movement at or below the version is in the snapshot
  already, so it is never counted twice, in whichever order the ack and the snapshot arrive.
- The caller stores a snapshot only while no push is between "sent" and "results recorded" (the
  delivery loop's ``exchange`` lock): otherwise an event the WMS applied before the snapshot, whose
  ack is not recorded yet, would be counted twice for a moment.
- Quantities are summed as ``Decimal`` in Python, never as SQL floats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from agent.domain import Snapshot
from outbox.db import Database
from outbox.schema import ItemCodeRow, ItemRow, MovementRow, Status, StockLevelRow, StockSnapshotRow, table

M = table(MovementRow)
L = table(StockLevelRow)
H = table(StockSnapshotRow)
ITEM = table(ItemRow)
CODE = table(ItemCodeRow)

UNACKED = (Status.READY, Status.IN_FLIGHT, Status.REJECTED)
FIELDS = (
    "sku",
    "location",
    "snapshot_on_hand",
    "pending_delta",
    "effective_on_hand",
    "allocated",
    "available",
    "snapshot_as_of",
    "snapshot_age_s",
)
_INSERT_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """The stored snapshot's header."""

    store_id: str
    version: int
    as_of: datetime
    pulled_at: float
    levels: int


@dataclass(frozen=True, slots=True)
class StockRecord:
    """The store's stock of one SKU at one location, as the stock view computes it."""

    sku: str
    location: str
    snapshot_on_hand: Decimal
    pending_delta: Decimal
    effective_on_hand: Decimal
    allocated: Decimal
    available: Decimal
    snapshot_as_of: datetime | None
    snapshot_age_s: float | None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON record (quantities as decimal strings, as on the WMS protocol)."""
        return {
            "sku": self.sku,
            "location": self.location,
            "snapshot_on_hand": _text(self.snapshot_on_hand),
            "pending_delta": _text(self.pending_delta),
            "effective_on_hand": _text(self.effective_on_hand),
            "allocated": _text(self.allocated),
            "available": _text(self.available),
            "snapshot_as_of": self.snapshot_as_of.isoformat() if self.snapshot_as_of else None,
            "snapshot_age_s": self.snapshot_age_s,
        }


class StockView:
    """Stores WMS snapshots and answers effective stock, for one SKU or the whole store."""

    def __init__(self, db: Database) -> None:
        """Use the outbox's database."""
        self.db = db

    # -- writing -------------------------------------------------------------------------------

    def replace(self, snapshot: Snapshot, pulled_at: float) -> bool:
        """Store ``snapshot`` unless the stored one is newer; return True if it was stored."""
        with self.db.write() as conn:
            current = conn.execute(select(H.c.version, H.c.store_id)).first()
            if current is not None and current.store_id == snapshot.store_id:
                if snapshot.version < current.version:
                    return False
                if snapshot.version == current.version:
                    conn.execute(update(H).values(pulled_at=pulled_at))
                    return False
            conn.execute(delete(L))
            rows = [
                {
                    "sku": lv.sku,
                    "location": lv.location,
                    "on_hand": str(lv.on_hand),
                    "allocated": str(lv.allocated),
                    "available": str(lv.available) if lv.available is not None else None,
                }
                for lv in snapshot.levels
            ]
            for i in range(0, len(rows), _INSERT_CHUNK):
                conn.execute(insert(L).prefix_with("OR REPLACE"), rows[i : i + _INSERT_CHUNK])
            conn.execute(delete(H))
            conn.execute(
                insert(H),
                {
                    "id": 1,
                    "store_id": snapshot.store_id,
                    "version": snapshot.version,
                    "as_of": snapshot.as_of.isoformat(),
                    "pulled_at": pulled_at,
                    "levels": len(rows),
                },
            )
        return True

    # -- reading -------------------------------------------------------------------------------

    def info(self) -> SnapshotInfo | None:
        """Return the stored snapshot's header, or None before the first snapshot."""
        with self.db.read() as conn:
            return _info(conn)

    def resolve(self, code: str) -> str | None:
        """Return the SKU that ``code`` (a SKU, barcode or alias) names, or None."""
        code = code.strip()
        with self.db.read() as conn:
            for query in (
                select(L.c.sku).where(L.c.sku == code).limit(1),
                select(ITEM.c.sku).where(ITEM.c.sku == code),
                select(CODE.c.sku).where(CODE.c.code == code),
                select(M.c.sku).where(M.c.sku == code).limit(1),
            ):
                sku = conn.execute(query).scalar_one_or_none()
                if sku is not None:
                    return str(sku)
        return None

    def lookup(self, sku: str, now: float) -> list[StockRecord]:
        """Return the effective stock of one SKU, one record per location (empty if unknown)."""
        with self.db.read() as conn:
            info = _info(conn)
            levels = conn.execute(select(L).where(L.c.sku == sku)).mappings().all()
            rows = conn.execute(
                select(M.c.sku, M.c.location, M.c.delta).where(M.c.sku == sku, _pending_condition(info))
            ).all()
        pending = _sum(rows)
        return _records(levels, pending, info, now)

    def all(self, now: float) -> list[StockRecord]:
        """Return the effective stock of every SKU and location, ordered by SKU then location."""
        with self.db.read() as conn:
            info = _info(conn)
            levels = conn.execute(select(L).order_by(L.c.sku, L.c.location)).mappings().all()
            rows = list(
                conn.execute(
                    select(M.c.sku, M.c.location, M.c.delta).where(M.c.status.in_(UNACKED), M.c.sku.is_not(None))
                )
            )
            if info is not None:
                rows += conn.execute(
                    select(M.c.sku, M.c.location, M.c.delta).where(
                        M.c.wms_position > info.version, M.c.status == Status.ACKED, M.c.sku.is_not(None)
                    )
                ).all()
        return _records(levels, _sum(rows), info, now)


def _pending_condition(info: SnapshotInfo | None) -> Any:
    unacked = M.c.status.in_(UNACKED)
    if info is None:
        return unacked
    return or_(unacked, and_(M.c.status == Status.ACKED, M.c.wms_position > info.version))


def _info(conn: Connection) -> SnapshotInfo | None:
    row = conn.execute(select(H)).mappings().first()
    if row is None:
        return None
    return SnapshotInfo(
        store_id=row["store_id"],
        version=int(row["version"]),
        as_of=datetime.fromisoformat(row["as_of"]),
        pulled_at=float(row["pulled_at"]),
        levels=int(row["levels"]),
    )


def _sum(rows: Iterable[Any]) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for sku, location, delta in rows:
        totals[(sku, location)] += Decimal(delta)
    return totals


def _records(
    levels: Iterable[Any], pending: dict[tuple[str, str], Decimal], info: SnapshotInfo | None, now: float
) -> list[StockRecord]:
    as_of = info.as_of if info else None
    age = round(max(now - info.pulled_at, 0.0), 1) if info else None
    out: list[StockRecord] = []
    seen: set[tuple[str, str]] = set()
    for level in levels:
        key = (level["sku"], level["location"])
        seen.add(key)
        on_hand, allocated = Decimal(level["on_hand"]), Decimal(level["allocated"])
        delta = pending.get(key, Decimal(0))
        base_available = Decimal(level["available"]) if level["available"] is not None else on_hand - allocated
        out.append(
            StockRecord(key[0], key[1], on_hand, delta, on_hand + delta, allocated, base_available + delta, as_of, age)
        )
    for (sku, location), delta in sorted(pending.items()):
        if (sku, location) not in seen:
            zero = Decimal(0)
            out.append(StockRecord(sku, location, zero, delta, delta, zero, delta, as_of, age))
    out.sort(key=lambda r: (r.sku, r.location))
    return out


def _text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
