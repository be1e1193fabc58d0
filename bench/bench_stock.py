#!/usr/bin/env python3
"""possync store stock view benchmark: a 100,000-SKU snapshot load, and single-SKU lookups.

Run with the project's Python: ``.venv/bin/python bench/bench_stock.py [--skus N] [--pending N]``.

It starts a real sandbox WMS (uvicorn on 127.0.0.1, in this process) whose ledger holds ``--skus``
items with stock, then measures through the real code paths:
- pulling the whole snapshot with the possync protocol client (``stock_snapshot``: every page over HTTP),
- storing it in a fresh outbox file (``StockView.replace``: one transaction, WAL, synchronous=FULL),
- computing the whole effective view (``StockView.all``, what the CSV export and the API list read) and
  writing the CSV export atomically,
- single-SKU lookups by SKU and by barcode (``resolve`` + ``lookup``, what ``possync stock X`` and
  ``GET /api/v1/stock?sku=`` do) with ``--pending`` unacked movements in the outbox.
Client and server share one interpreter (and its GIL), so the HTTP figure is pessimistic.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.domain import ItemRecord, Kind, Movement, make_event_id  # noqa: E402
from agent.stock_export import write_export  # noqa: E402
from outbox.items import ItemCache  # noqa: E402
from outbox.queue import Outbox  # noqa: E402
from outbox.stock import StockView  # noqa: E402
from wms_client.possync_http import PossyncWmsClient, PossyncWmsSettings  # noqa: E402
from wms_client.sandbox.server import SandboxServer  # noqa: E402


def sku(n: int) -> str:
    return f"SKU-{n:06d}"


def barcode(n: int) -> str:
    return f"{400000000000 + n:013d}"


def write_items(path: Path, count: int) -> None:
    rng = random.Random(3)
    with open(path, "w", encoding="utf-8") as out:
        out.write("sku,description,barcodes,base_unit,case_qty,location,on_hand\n")
        for n in range(count):
            out.write(f"{sku(n)},item {n},{barcode(n)},EA,12,S001,{rng.randint(0, 500)}\n")


def pending_movements(count: int, skus: int) -> list[Movement]:
    rng = random.Random(5)
    from datetime import UTC, date, datetime

    out = []
    for i in range(count):
        n = rng.randrange(skus)
        out.append(
            Movement(
                event_id=make_event_id("S001", f"B{i}", 1, Kind.SALE),
                store_id="S001",
                terminal_id="R1",
                pos_transaction_id=f"B{i}",
                line_no=1,
                business_day=date(2026, 11, 20),
                occurred_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
                kind=Kind.SALE,
                sku=sku(n),
                raw_item_id=barcode(n),
                quantity=Decimal(1),
                unit="EA",
                original_quantity=Decimal(1),
                original_unit="EA",
                location="S001",
            )
        )
    return out


def timed(fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    args = parser.parse_args()
    token = secrets.token_hex(8)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        write_items(base / "items.csv", args.skus)
        load_s, _ = timed(lambda: SandboxServer(base / "wms", base / "items.csv", token))
        server = SandboxServer(base / "wms", None, token)
        server.start()
        rows.append(("sandbox ledger load (setup)", f"{load_s:.2f} s"))
        client = PossyncWmsClient(
            PossyncWmsSettings.model_validate({"url": server.url, "token": "env:UNUSED", "timeout_s": 60}),
            "S001",
            lambda _ref: token,
        )
        outbox = Outbox.open_file(base / "agent" / "outbox.sqlite")
        view = StockView(outbox.db)
        try:
            pull_s, snapshot = timed(client.stock_snapshot)
            rows.append((f"pull snapshot over HTTP ({len(snapshot.levels):,} levels, 1,000/page)", f"{pull_s:.2f} s"))
            store_s, _ = timed(lambda: view.replace(snapshot, time.time()))
            rows.append(("store snapshot (StockView.replace, one transaction)", f"{store_s:.2f} s"))
            rows.append(("snapshot load total (pull + store)", f"{pull_s + store_s:.2f} s"))
            items = [ItemRecord(sku=sku(n), barcodes=(barcode(n),)) for n in range(args.skus)]
            ItemCache(outbox.db).replace(items)
            backlog = pending_movements(args.pending, args.skus)
            for i in range(0, len(backlog), 2000):
                outbox.enqueue(backlog[i : i + 2000], source="bench")
            all_s, records = timed(lambda: view.all(time.time()))
            rows.append(
                (f"whole effective view ({len(records):,} records, {args.pending:,} pending)", f"{all_s:.2f} s")
            )
            export = base / "export" / "stock.csv"
            export_s, _ = timed(lambda: write_export(records, export, ["sku", "location", "effective_on_hand"]))
            rows.append((f"CSV export, atomic ({export.stat().st_size / 1e6:.1f} MB)", f"{export_s:.2f} s"))
            rng = random.Random(11)
            for label, code in (("SKU", sku), ("barcode", barcode)):
                times = []
                for _ in range(args.lookups):
                    n = rng.randrange(args.skus)
                    started = time.perf_counter()
                    found = view.resolve(code(n))
                    assert found is not None
                    result = view.lookup(found, time.time())
                    times.append(time.perf_counter() - started)
                    assert result and result[0].sku == sku(n)
                rows.append(
                    (
                        f"single lookup by {label}: median / p99 ({args.lookups:,} lookups)",
                        f"{statistics.median(times) * 1000:.2f} / {percentile(times, 0.99) * 1000:.2f} ms",
                    )
                )
        finally:
            client.close()
            outbox.close()
            server.stop()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  -----")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
