"""Build a large outbox quickly (for backlog tests and benchmarks): movements written in bulk with sqlite3."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from agent.domain import Kind, Movement
from outbox.queue import Outbox

SKUS = [
    "SKU-1001",
    "SKU-1002",
    "SKU-1003",
    "SKU-2001",
    "SKU-2002",
    "SKU-3001",
    "SKU-3002",
    "SKU-4001",
    "SKU-4002",
    "SKU-5001",
]


def build_backlog(
    path: Path, count: int, prefix: str = "BL", age_s: float = 0.0, schema_version: int | None = None
) -> None:
    """Create an outbox at ``path`` holding ``count`` ready sales (one unit each, rotating SKUs), ``age_s`` old.

    The rows are generated inside SQLite (a recursive CTE) so a million take seconds, not minutes;
    event ids are unique per row, payloads are full wire movements. ``schema_version`` builds the file
    as an older possync left it (only the migrations up to that version), for upgrade tests.
    """
    if schema_version is None:
        Outbox.open_file(path).close()  # the real schema, migrated
    else:
        _old_schema(path, schema_version)
    template = Movement(
        event_id="E",
        store_id="S001",
        terminal_id="R1",
        pos_transaction_id="T",
        line_no=1,
        business_day=date(2026, 11, 20),
        occurred_at=datetime(2026, 11, 20, 12, 0, tzinfo=UTC),
        kind=Kind.SALE,
        sku="S",
        raw_item_id="S",
        quantity=Decimal(1),
        unit="EA",
        original_quantity=Decimal(1),
        original_unit="EA",
        location="S001",
        source="backlog",
        source_ref="r",
    ).to_wire()
    skus = "CASE n % 10 " + " ".join(f"WHEN {i} THEN '{sku}'" for i, sku in enumerate(SKUS)) + " END"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(
        f"""
        WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < ?),
        rows AS (SELECT n, printf('{prefix}-%09d', n) AS eid, printf('{prefix}%08d', n / 3) AS txn,
                        n % 3 + 1 AS line, {skus} AS sku FROM seq)
        INSERT INTO movement (event_id, status, source, pos_transaction_id, line_no, kind, sku, location, delta,
                              business_day, occurred_at, payload, enqueued_at)
        SELECT eid, 'ready', 'backlog', txn, line, 'sale', sku, 'S001', '-1', '2026-11-20',
               '2026-11-20T12:00:00+00:00',
               json_set(?, '$.event_id', eid, '$.pos_transaction_id', txn, '$.line_no', line, '$.sku', sku,
                        '$.raw_item_id', sku, '$.source_ref', 'backlog ' || n),
               ?
        FROM rows
        """,
        (count, json.dumps(template), time.time() - age_s),
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _old_schema(path: Path, version: int) -> None:
    """Create the outbox file at schema ``version`` the way that possync's migrations left it."""
    from outbox.db import Database
    from outbox.migrations import MIGRATIONS

    db = Database(path)
    try:
        for number, migration in enumerate(MIGRATIONS[:version], 1):
            with db.write() as conn:
                migration(conn)
                conn.exec_driver_sql(f"PRAGMA user_version={number}")
    finally:
        db.close()
