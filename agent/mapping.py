"""Map what the POS wrote (SKU, barcode, alias; any unit) to a canonical SKU in its base unit.

Every source's movements pass through ``ItemMaster.map`` before they are stored, and held
movements pass through it again after each item-master refresh: one code path for all sources.

Invariants:
- Lookup order: exact SKU, barcode, alias, then the GTIN-14 form of a numeric code (so UPC-A,
  EAN-13 and GTIN-14 spellings of one barcode match), then a numeric code without its leading zeros
  (so a 4-digit PLU such as ``4011`` matches ``00000000004011``, as NCR and other POSLog exports
  write it). Codes are compared case-insensitively.
- Units are the item master's: any unit code it defines for an item (``CS``, ``PK6``, ``G``, ``LB``)
  converts by its factor to the base unit; unit codes are compared case-insensitively.
- A movement whose item or unit is unknown is returned unmapped, with an issue that names the
  raw value; it is never dropped and never guessed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from agent.domain import CaptureIssue, ItemRecord, Movement


def gtin14(code: str) -> str | None:
    """Return the GTIN-14 form of a numeric barcode of 8 to 14 digits, else None."""
    return code.zfill(14) if code.isdigit() and 8 <= len(code) <= 14 else None


def numeric_key(code: str) -> str | None:
    """Return the index key of a numeric code by its value (leading zeros dropped), else None."""
    if not code.isdigit():
        return None
    value = code.lstrip("0")
    return f"#{value}" if value else None


@dataclass(frozen=True, slots=True)
class _Entry:
    item: ItemRecord
    units: dict[str, Decimal]


class ItemMaster:
    """An in-memory index of the item master, safe to replace while sources are mapping."""

    def __init__(self, items: Iterable[ItemRecord] = ()) -> None:
        """Index ``items`` (may be empty until the first refresh)."""
        self._lock = threading.Lock()
        self._index: dict[str, _Entry] = {}
        self._count = 0
        self.replace(items)

    def __len__(self) -> int:
        """Return the number of items known."""
        return self._count

    def replace(self, items: Iterable[ItemRecord]) -> None:
        """Swap in a new item master atomically."""
        index: dict[str, _Entry] = {}
        weak: dict[str, _Entry] = {}
        count = 0
        for item in items:
            count += 1
            units = {u.upper(): f for u, f in item.units.items()}
            units.setdefault(item.base_unit.upper(), Decimal(1))
            entry = _Entry(item, units)
            index[item.sku.upper()] = entry
            for code in (*item.barcodes, *item.aliases):
                weak.setdefault(code.upper(), entry)
                g = gtin14(code)
                if g:
                    weak.setdefault(g, entry)
            for code in (item.sku, *item.barcodes, *item.aliases):
                n = numeric_key(code)
                if n:
                    weak.setdefault(n, entry)
        for code, entry in weak.items():
            index.setdefault(code, entry)  # a SKU always wins over another item's barcode or alias
        with self._lock:
            self._index, self._count = index, count

    def lookup(self, raw: str) -> ItemRecord | None:
        """Return the item the POS meant by ``raw``, or None."""
        entry = self._find(raw)
        return entry.item if entry else None

    def _find(self, raw: str) -> _Entry | None:
        code = raw.strip().upper()
        index = self._index
        entry = index.get(code)
        if entry is None:
            g = gtin14(code)
            entry = index.get(g) if g else None
        if entry is None:
            n = numeric_key(code)
            entry = index.get(n) if n else None
        return entry

    def map(self, movements: Sequence[Movement]) -> tuple[list[Movement], list[CaptureIssue]]:
        """Map each movement; unknown items or units stay unmapped and get an issue."""
        out: list[Movement] = []
        issues: list[CaptureIssue] = []
        for movement in movements:
            mapped, issue = self.map_one(movement)
            out.append(mapped)
            if issue is not None:
                issues.append(issue)
        return out, issues

    def map_one(self, movement: Movement) -> tuple[Movement, CaptureIssue | None]:
        """Map one movement; return it (mapped or not) and the issue that holds it, if any."""
        entry = self._find(movement.raw_item_id)
        if entry is None:
            return movement, _issue(
                movement,
                "UNKNOWN_ITEM",
                f"item {movement.raw_item_id!r} is not in the WMS item master (as SKU, barcode or "
                "alias); it will be sent automatically once the item master has it",
            )
        unit = (movement.original_unit or entry.item.base_unit).upper()
        factor = entry.units.get(unit)
        if factor is None:
            known = ", ".join(sorted(entry.units))
            return movement, _issue(
                movement,
                "UNKNOWN_UNIT",
                f"unit {unit!r} is not defined for {entry.item.sku} (known: {known}); it will be "
                "sent automatically once the item master defines it",
            )
        quantity = movement.original_quantity * factor
        return movement.mapped(entry.item.sku, quantity, entry.item.base_unit), None


def _issue(movement: Movement, code: str, message: str) -> CaptureIssue:
    return CaptureIssue(
        issue_id=movement.event_id,
        source=movement.source,
        source_ref=movement.source_ref,
        code=code,
        message=message,
        pos_transaction_id=movement.pos_transaction_id,
        line_no=movement.line_no,
        raw_item_id=movement.raw_item_id,
        event_id=movement.event_id,
    )
