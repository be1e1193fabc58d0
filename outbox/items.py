"""The cached WMS item master: survives restarts so mapping works offline.

Invariant: a refresh replaces the whole cache in one transaction, so readers never see a mix of
two versions of the item master.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import delete, insert, select

from agent.domain import ItemRecord
from outbox.db import Database
from outbox.schema import ItemCodeRow, ItemRow, table

ITEM = table(ItemRow)
CODE = table(ItemCodeRow)


class ItemCache:
    """Read and replace the item master cached in the outbox file."""

    def __init__(self, db: Database) -> None:
        """Use the outbox's database."""
        self.db = db

    def replace(self, items: Sequence[ItemRecord]) -> int:
        """Replace the cache with ``items``; return how many items it now holds."""
        item_rows = []
        code_rows: dict[str, dict[str, str]] = {}
        for item in items:
            item_rows.append(
                {
                    "sku": item.sku,
                    "description": item.description,
                    "base_unit": item.base_unit,
                    "units": json.dumps({u: str(f) for u, f in item.units.items()}),
                    "status": item.status,
                }
            )
            for kind, codes in (("barcode", item.barcodes), ("alias", item.aliases)):
                for code in codes:
                    code_rows.setdefault(code, {"code": code, "sku": item.sku, "code_kind": kind})
        with self.db.write() as conn:
            conn.execute(delete(CODE))
            conn.execute(delete(ITEM))
            if item_rows:
                conn.execute(insert(ITEM), item_rows)
            if code_rows:
                conn.execute(insert(CODE), list(code_rows.values()))
        return len(item_rows)

    def load(self) -> list[ItemRecord]:
        """Return every cached item with its barcodes and aliases."""
        with self.db.read() as conn:
            codes: dict[str, dict[str, list[str]]] = {}
            for code, sku, kind in conn.execute(select(CODE.c.code, CODE.c.sku, CODE.c.code_kind)):
                codes.setdefault(sku, {"barcode": [], "alias": []}).setdefault(kind, []).append(code)
            items = []
            for row in conn.execute(select(ITEM)).mappings():
                extra = codes.get(row["sku"], {})
                items.append(
                    ItemRecord(
                        sku=row["sku"],
                        description=row["description"],
                        base_unit=row["base_unit"],
                        units={u: Decimal(f) for u, f in json.loads(row["units"]).items()},
                        barcodes=tuple(extra.get("barcode", ())),
                        aliases=tuple(extra.get("alias", ())),
                        status=row["status"],
                    )
                )
        return items
