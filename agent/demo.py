"""``possync demo``: the whole pipeline on sample data, with the WMS briefly offline, then proof.

The reconciliation reads the sample CSV and item master on its own (plain ``csv``), not through the
agent's pipeline, so agreement means the pipeline delivered what the POS recorded.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from agent.config import load_config
from agent.logs import setup_logging
from agent.runtime import Agent
from wms_client.sandbox.server import SandboxServer

DATA = Path(__file__).parent / "demo_data"
SIGN = {"SALE": -1, "RETURN": 1, "XFER_OUT": -1, "XFER_IN": 1}

SAMPLE_EXPORT_MAPPING = """\
[sources.columns]
pos_transaction_id = "txn_id"
line_no = "line"
occurred_at = "timestamp"
terminal_id = "register"
kind = "type"
item = "item"
quantity = "qty"
unit = "uom"
unit_price = "price"
counterpart_location = "dest"
[sources.kinds]
SALE = "sale"
RETURN = "return"
XFER_OUT = "transfer_out"
XFER_IN = "transfer_in"
"""
"""How the sample POS export's columns and type codes map to movements (demo, benchmarks, tests)."""

CONFIG = (
    """\
# Written by 'possync demo'. The same keys as a store's possync.toml.
[agent]
store_id = "S001"
timezone = "America/Chicago"
data_dir = "./data"

[wms]
kind = "possync"
url = "{url}"
token = "env:POSSYNC_DEMO_TOKEN"
batch_size = 20

[sync]
sla_s = 60

[[sources]]
name = "pos-exports"
kind = "file_drop"
path = "./inbox"
pattern = "*.csv"
format = "csv"
archive = "./inbox/done"
quarantine = "./inbox/quarantine"
settle = "0.5s"
"""
    + SAMPLE_EXPORT_MAPPING
)


def pos_totals(export: Path, items: Path) -> dict[str, Decimal]:
    """Net stock change per SKU at the store, computed straight from the POS export."""
    codes: dict[str, tuple[str, Decimal]] = {}
    with open(items, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            entry = (row["sku"], Decimal(row["case_qty"] or "1"))
            for code in [row["sku"], *row["barcodes"].split("|")]:
                codes[code.strip().upper()] = entry
    totals: dict[str, Decimal] = defaultdict(Decimal)
    with open(export, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            sku, case_qty = codes[row["item"].strip().upper()]
            quantity = Decimal(row["qty"]) * (case_qty if row["uom"].strip().upper() == "CS" else 1)
            totals[sku] += SIGN[row["type"].strip().upper()] * quantity
    return dict(totals)


def _line(text: str) -> None:
    print(text, flush=True)


def run_demo(keep: Path | None = None, offline_s: float = 2.0, timeout_s: float = 60.0) -> int:
    """Run the demo; return 0 when the WMS ledger agrees with the POS export."""
    workdir = keep.resolve() if keep else Path(tempfile.mkdtemp(prefix="possync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["POSSYNC_DEMO_TOKEN"] = secrets.token_urlsafe(24)
    export = DATA / "pos-export-sample.csv"
    with open(export, encoding="utf-8") as handle:
        lines_in_export = sum(1 for _ in handle) - 1

    sandbox = SandboxServer(workdir / "wms", DATA / "items.csv", os.environ["POSSYNC_DEMO_TOKEN"], port=0)
    sandbox.start()
    config_path = workdir / "possync.toml"
    config_path.write_text(CONFIG.format(url=sandbox.url), encoding="utf-8")
    config = load_config(config_path)
    setup_logging("info", config.data_dir / "logs", console_level="error")
    agent = Agent(config)
    agent.start()
    inbox = workdir / "inbox"
    try:
        _line(f"possync demo in {workdir}")
        _line(f"  1. sandbox WMS listening on {sandbox.url} with {len(agent.items)} items")
        _line(f"  2. agent running for store {config.agent.store_id}, watching {inbox}")
        if offline_s > 0:
            _line(f"  3. the WMS goes offline for {offline_s:g} s (the store keeps capturing)")
            sandbox.refuse(offline_s)
            time.sleep(0.2)
        _line(f"  4. the POS drops {export.name} ({lines_in_export} lines) into the inbox")
        staging = inbox / f".{export.name}.part"
        shutil.copyfile(export, staging)
        staging.replace(inbox / export.name)
        done = _progress(agent, inbox / "done" / export.name, lines_in_export, timeout_s)
        status = agent.status()
    finally:
        agent.stop()
    try:
        ok = _reconcile(export, sandbox, config.agent.store_id) and done and status["exceptions_open"] == 0
    finally:
        sandbox.stop()
    if keep:
        _line(f"\nFiles kept in {workdir} (config: {config_path}).")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    _line("RESULT: the WMS ledger matches the POS export." if ok else "RESULT: MISMATCH - see above.")
    return 0 if ok else 1


def _progress(agent: Agent, archived: Path, expected: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        counts = agent.outbox.counts()
        live = agent.live.snapshot()
        captured = counts.pending + counts.acked + counts.held + counts.rejected
        wms = {True: "online", False: "OFFLINE", None: "?"}[live.wms_reachable]
        text = (
            f"     captured {captured:3d}/{expected} | delivered {counts.acked:3d} | "
            f"pending {counts.pending:3d} | exceptions {counts.exceptions_open} | WMS {wms}"
        )
        if text != last:
            _line(text)
            last = text
        if archived.exists() and captured >= expected and counts.pending == 0:
            _line(f"  5. all {counts.acked} movements acknowledged by the WMS; file archived to {archived.parent}")
            return True
        time.sleep(0.25)
    _line("  5. timed out waiting for delivery")
    return False


def _reconcile(export: Path, sandbox: SandboxServer, store_id: str) -> bool:
    expected = pos_totals(export, DATA / "items.csv")
    ledger: dict[str, Decimal] = defaultdict(Decimal)
    events = 0
    for event in sandbox.ledger.ledger_rows(0, 1_000_000):
        if event["stock_location"] == store_id:
            ledger[event["sku"]] += Decimal(event["delta"])
            events += 1
    stock = {r["sku"]: r for r in sandbox.ledger.all_stock() if r["location"] == store_id}
    _line(f"\nReconciliation, store {store_id} ({events} events in the WMS ledger):")
    _line(f"  {'SKU':<10} {'POS export':>11} {'WMS ledger':>11} {'opening':>8} {'closing':>8}")
    ok = True
    for sku in sorted(set(expected) | set(ledger)):
        pos, wms = expected.get(sku, Decimal(0)), ledger.get(sku, Decimal(0))
        row = stock.get(sku, {"opening": "-", "on_hand": "-"})
        flag = "" if pos == wms else "   <-- differs"
        ok = ok and pos == wms
        _line(f"  {sku:<10} {pos:>+11} {wms:>+11} {row['opening']:>8} {row['on_hand']:>8}{flag}")
    return ok


if __name__ == "__main__":
    sys.exit(run_demo())
