#!/usr/bin/env python3
"""possync file capture benchmark: a large CSV and a large POSLog into the outbox, speed and peak memory.

Run with the project's Python: ``.venv/bin/python bench/bench_files.py``.

For each format it generates a file at two sizes in a temporary folder (defaults: CSV of 100,000 and
1,000,000 rows; POSLog of about 20 MB and 200 MB), then captures each one in a fresh child process
through the real source code path: ``FileDropSource.scan`` (SHA-256 fingerprint, streaming reader,
chunks) -> ``OutboxSink`` (item mapping, post-voids) -> ``Outbox`` (SQLite WAL, synchronous=FULL),
until the file is archived. The child reports its wall time and its peak resident set size
(``ru_maxrss``), and its RSS just before capture (the interpreter and libraries), so the table shows
what capturing costs on top. Flat memory means the two sizes of a format peak at about the same RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SKUS = [f"SKU-{n}" for n in (1001, 1002, 1003, 2001, 2002, 3001, 3002, 4001, 4002, 5001)]
CSV_HEADER = "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\n"
PRODUCTS = 5000  # distinct GTINs in the generated POSLog, all in the item master


def write_csv(path: Path, rows: int) -> int:
    """Write a POS export of ``rows`` rows (3 lines per transaction, 1 in 20 a return)."""
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(CSV_HEADER)
        batch = []
        for i in range(rows):
            txn, line = i // 3, i % 3 + 1
            kind = "RETURN" if txn % 20 == 0 else "SALE"
            batch.append(
                f"R2-{txn:08d},{line},2026-11-20T09:{txn % 60:02d}:{line:02d}-06:00,R2,{kind},"
                f"{SKUS[rng.randrange(10)]},{rng.randint(1, 3)},EA,{rng.randint(100, 12000) / 100:.2f},\n"
            )
            if len(batch) == 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    return rows


POSLOG_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" '
    'xmlns:acs="http://www.ncr.com/rsd/acs/tlog/markup/poslog/2.1">\n'
)
SALE = (
    '<LineItem EntryMethod="Scanned"><SequenceNumber>{seq}</SequenceNumber><Sale ItemType="Stock">'
    '<POSIdentity POSIDType="GTIN"><POSItemID>{item}</POSItemID><Qualifier>12</Qualifier></POSIdentity>'
    '<ItemID>{item}</ItemID><MerchandiseHierarchy Level="Department">12</MerchandiseHierarchy>'
    "<Description>BENCH ITEM {item}</Description><RegularSalesUnitPrice>3.49</RegularSalesUnitPrice>"
    "<ExtendedAmount>{amount}</ExtendedAmount><DiscountAmount>0.00</DiscountAmount><Quantity>{qty}</Quantity>"
    "<acs:OperatorSequence>{seq}</acs:OperatorSequence><acs:ReportCode>0</acs:ReportCode>"
    '<acs:Itemizers Tax1="true" Itemizer1="true">97</acs:Itemizers></Sale></LineItem>'
)
VOIDED = SALE.replace('<LineItem EntryMethod="Scanned">', '<LineItem VoidFlag="true" EntryMethod="Keyed">')
TAIL_ITEMS = (
    '<LineItem EntryMethod="acs:Auto"><SequenceNumber>{seq}</SequenceNumber><Tax><TaxableAmount>9.28</TaxableAmount>'
    "<Amount>0.94</Amount><Reason>Charged</Reason></Tax></LineItem>"
    '<LineItem EntryMethod="MSR"><SequenceNumber>{seq2}</SequenceNumber><Tender TenderType="CreditDebit">'
    "<TenderID>12</TenderID><Amount>20.45</Amount></Tender></LineItem>"
    '<LineItem EntryMethod="acs:Auto"><SequenceNumber>{seq3}</SequenceNumber><LoyaltyReward>'
    "<PromotionID>5123</PromotionID><EventID>1</EventID><ReasonCode>0</ReasonCode></LoyaltyReward></LineItem>"
)


def write_poslog(path: Path, megabytes: int) -> int:
    """Write a POSLog of about ``megabytes`` MB, NCR-like; return the number of stock-moving Sale lines."""
    rng = random.Random(11)
    target = megabytes * 1024 * 1024
    stock_lines = 0
    seq = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write(POSLOG_HEAD)
        size = len(POSLOG_HEAD)
        while size < target:
            seq += 1
            items = []
            n = rng.randint(2, 12)
            for line in range(1, n + 1):
                item = f"{rng.randint(1, PRODUCTS):014d}"
                items.append(
                    SALE.format(seq=line, item=item, qty=rng.choice(("1", "2", "0.65", "1.47")), amount="3.49")
                )
                stock_lines += 1
            if seq % 25 == 0:  # an NCR void: a negative line cancelling the last one
                last = items[-1]
                item = last[last.index("<ItemID>") + 8 : last.index("</ItemID>")]
                qty = last[last.index("<Quantity>") + 10 : last.index("</Quantity>")]
                items.append(VOIDED.format(seq=n + 1, item=item, qty=f"-{qty}", amount="-3.49"))
                stock_lines -= 1
            flag = ' CancelFlag="true"' if seq % 200 == 0 else ""
            if flag:
                stock_lines -= n - (1 if seq % 25 == 0 else 0)
            text = (
                f"<Transaction{flag}><RetailStoreID>9</RetailStoreID><WorkstationID>{seq % 8 + 1}</WorkstationID>"
                f"<SequenceNumber>{seq}</SequenceNumber><BusinessDayDate>2026-11-20</BusinessDayDate>"
                f"<EndDateTime>2026-11-20T15:{seq % 60:02d}:25</EndDateTime><CurrencyCode>USD</CurrencyCode>"
                f'<RetailTransaction Version="2.1"><ReceiptDateTime>2026-11-20T15:15:25</ReceiptDateTime>'
                + "".join(items)
                + TAIL_ITEMS.format(seq=n + 2, seq2=n + 3, seq3=n + 4)
                + '<Total TotalType="TransactionGrandAmount">20.45</Total></RetailTransaction></Transaction>\n'
            )
            out.write(text)
            size += len(text)
        out.write("</POSLog>\n")
    return stock_lines


def child(fmt: str, path: Path) -> None:
    """Capture one file through FileDropSource.scan into a fresh outbox; print a JSON result."""
    from zoneinfo import ZoneInfo

    from agent.capture import OutboxSink
    from agent.domain import ItemRecord
    from agent.mapping import ItemMaster
    from outbox.queue import Outbox
    from pos_adapters.base import SourceContext
    from pos_adapters.file_drop import FileDropSettings, FileDropSource

    folder = path.parent.parent
    settings: dict[str, object] = {"name": "bench", "kind": "file_drop", "path": path.parent.name, "settle": 0}
    settings["max_file_mb"] = 1024
    if fmt == "csv":
        settings["columns"] = {
            "pos_transaction_id": "txn_id",
            "line_no": "line",
            "occurred_at": "timestamp",
            "terminal_id": "register",
            "kind": "type",
            "item": "item",
            "quantity": "qty",
            "unit": "uom",
            "unit_price": "price",
        }
        settings["kinds"] = {"SALE": "sale", "RETURN": "return"}
    else:
        settings["format"] = "poslog"
    ctx = SourceContext("S001", ZoneInfo("America/Chicago"), folder, folder, "S001")
    source = FileDropSource(FileDropSettings.model_validate(settings), ctx)
    products = [ItemRecord(sku=f"P{n}", barcodes=(f"{n:014d}",)) for n in range(1, PRODUCTS + 1)]
    items = ItemMaster([*(ItemRecord(sku=s) for s in SKUS), *products])
    outbox = Outbox.open_file(folder / "data" / "outbox.sqlite")
    sink = OutboxSink("bench", outbox, items, lambda _n: None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    source.scan(sink, threading.Event())
    elapsed = time.perf_counter() - started
    archived = (path.parent / "done" / path.name).exists()
    counts = outbox.counts()
    outbox.close()
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "stored": counts.ready + counts.held,
                "archived": archived,
                "rss_before_kb": before,
                "rss_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "outbox_mb": sum(p.stat().st_size for p in (folder / "data").iterdir()) / 1048576,
            }
        )
    )


def run(fmt: str, size: int, work: Path) -> dict[str, object]:
    case = work / f"{fmt}-{size}"
    inbox = case / "inbox"
    inbox.mkdir(parents=True)
    path = inbox / ("export.csv" if fmt == "csv" else "poslog.xml")
    started = time.perf_counter()
    rows = write_csv(path, size) if fmt == "csv" else write_poslog(path, size)
    generated = time.perf_counter() - started
    mb = path.stat().st_size / 1048576
    print(
        f"  generated {path.name}: {mb:,.1f} MB, {rows:,} stock lines in {generated:.0f} s", file=sys.stderr, flush=True
    )
    result = subprocess.run(
        [sys.executable, __file__, "--child", fmt, str(path)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"child failed: {result.stderr[-2000:]}")
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    out.update(fmt=fmt, size=size, mb=mb, rows=rows)
    if not out["archived"] or out["stored"] != rows:
        raise RuntimeError(f"capture incomplete: {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv-rows", type=int, nargs=2, default=[100_000, 1_000_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--poslog-mb", type=int, nargs=2, default=[20, 200], metavar=("SMALL", "LARGE"))
    parser.add_argument("--child", nargs=2, metavar=("FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    print(f"possync file capture bench on {sys.platform}, Python {sys.version.split()[0]}", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="possync-bench-") as tmp:
        for fmt, sizes in (("csv", args.csv_rows), ("poslog", args.poslog_mb)):
            for size in sizes:
                results.append(run(fmt, size, Path(tmp)))
                os.sync()
    print()
    print("| file | size | stock lines | seconds | lines/s | MB/s | peak RSS | RSS before capture | outbox |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        seconds = float(r["seconds"])  # type: ignore[arg-type]
        print(
            f"| {r['fmt']} | {float(r['mb']):,.1f} MB | {int(r['rows']):,} | {seconds:,.1f} | "  # type: ignore[call-overload]
            f"{int(r['rows']) / seconds:,.0f} | {float(r['mb']) / seconds:,.1f} | "  # type: ignore[call-overload]
            f"{int(r['rss_peak_kb']) / 1024:,.0f} MB | {int(r['rss_before_kb']) / 1024:,.0f} MB | "  # type: ignore[call-overload]
            f"{float(r['outbox_mb']):,.0f} MB |"  # type: ignore[arg-type]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
