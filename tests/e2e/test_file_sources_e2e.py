"""End to end: POSLog files and a tailed journal through ``possync run`` to the sandbox WMS, exactly once."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import AgentProcess, ledger_totals, run_cli, status_json, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "file_drop"
DAY_1 = FIXTURES / "poslog-arts" / "input.xml"
DAY_2 = FIXTURES / "poslog-prefixed-post-void" / "input.xml"

POSLOG_SOURCE = """
[[sources]]
name = "poslog"
kind = "file_drop"
path = "./poslog"
pattern = "*.xml"
format = "poslog"
settle = "0.2s"
rescan_every = "2s"
"""

JOURNAL_SOURCE = """
[[sources]]
name = "ej"
kind = "journal"
path = "./pos/journal.log"
format = "jsonl"
poll_every = "0.2s"
settle = "0.5s"
"""


@pytest.fixture
def env(token: str) -> dict[str, str]:
    return {"POSSYNC_TEST_TOKEN": token}


@pytest.fixture
def agents(env: dict[str, str]):  # type: ignore[no-untyped-def]
    started: list[AgentProcess] = []

    def make(config: Path) -> AgentProcess:
        process = AgentProcess(config, env).start()
        started.append(process)
        return process

    yield make
    for process in started:
        if process.alive():
            process.kill()


def drop(folder: Path, source: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{name}.part"
    shutil.copyfile(source, staging)
    staging.replace(folder / name)


def open_exceptions(config: Path, env: dict[str, str]) -> list[dict[str, object]]:
    listing = run_cli("exceptions", "list", "--json", "--config", str(config), env=env)
    return list(json.loads(listing.stdout))


def test_poslog_files_move_wms_stock_by_exactly_the_net_of_sales_returns_and_voids(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], token: str, agents
) -> None:
    # A weighed item the sample item master lacks: sold by the kilogram, PLU 4011.
    httpx.post(
        f"{sandbox.url}/_sandbox/items",
        json=[{"sku": "BANANA", "base_unit": "KG", "units": {"KG": "1", "KGM": "1"}, "barcodes": ["4011"]}],
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    config = write_config(tmp_path, sandbox.url, sources=POSLOG_SOURCE)
    opening = {(r["sku"], r["location"]): Decimal(r["on_hand"]) for r in sandbox.ledger.all_stock()}
    agents(config)
    inbox = tmp_path / "poslog"

    # Day 2 arrives first: its post-void names a day-1 transaction possync has not seen yet.
    drop(inbox, DAY_2, "day2.xml")
    wait_for(lambda: (inbox / "done" / "day2.xml").exists(), timeout=30, what="day 2 captured")
    waiting = wait_for(lambda: open_exceptions(config, env), what="the waiting post-void shown")
    assert [e["code"] for e in waiting] == ["VOID_WAITING"]
    assert "1-3-58-20261120" in str(waiting[0]["message"]) and "automatically" in str(waiting[0]["message"])

    drop(inbox, DAY_1, "day1.xml")
    # 8 sale/return lines + 1 on day 2, and 2 reversals (2/105 in its own file, 3/58 across files).
    wait_for(lambda: sandbox.ledger.stats()["applied"] == 11, timeout=40, what="all events at the WMS")
    rows = sandbox.ledger.ledger_rows(0, 1000)
    assert len({r["event_id"] for r in rows}) == len(rows) == 11
    assert ledger_totals(rows) == {
        "SKU-1001": Decimal(-3),  # 2 on day 1 + 1 by its alias TR42 on day 2; cancelled/training ones not
        "SKU-2001": Decimal(-1),  # by POSItemID barcode
        "SKU-1002": Decimal(1),  # the return
        "SKU-3001": Decimal(-1),  # the ARTS-voided line of 3 moved nothing
        "SKU-4001": Decimal(-1),  # 2 sold, 1 voided by NCR's negative line
        "BANANA": Decimal("-0.75"),  # weighed, KGM
    }  # SKU-2002 (sold, post-voided in the same file) and SKU-5001 (a case of 6, post-voided next day) net 0
    closing = {(r["sku"], r["location"]): Decimal(r["on_hand"]) for r in sandbox.ledger.all_stock()}
    for sku, change in ledger_totals(rows).items():
        assert closing[(sku, "S001")] == opening.get((sku, "S001"), Decimal(0)) + change, sku
    for sku in ("SKU-2002", "SKU-5001"):
        assert closing[(sku, "S001")] == opening[(sku, "S001")], sku
    status = wait_for(lambda: (s := status_json(config, env))["pending"] == 0 and s, what="queue drained")
    assert status["exceptions_open"] == 0 and status["state"] == "green"

    # The same files again (even renamed) change nothing.
    drop(inbox, DAY_1, "day1-again.xml")
    wait_for(lambda: (inbox / "done" / "day1-again.xml").exists(), timeout=30)
    assert sandbox.ledger.stats()["applied"] == 11


def sale_line(txn: str, item: str, qty: str) -> bytes:
    doc = {"transaction_id": txn, "terminal_id": "R1", "occurred_at": "2026-11-20T10:00:00", "kind": "sale"}
    doc["lines"] = [{"line_no": 1, "item": item, "quantity": qty}]  # type: ignore[assignment]
    return (json.dumps(doc) + "\n").encode()


def test_a_tailed_journal_survives_sigkill_rotation_and_a_half_written_line(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agents
) -> None:
    config = write_config(tmp_path, sandbox.url, sources=JOURNAL_SOURCE)
    journal = tmp_path / "pos" / "journal.log"
    journal.parent.mkdir()
    journal.write_bytes(sale_line("J1", "SKU-1001", "1") + sale_line("J2", "SKU-1002", "2"))
    agent = agents(config)
    wait_for(lambda: sandbox.ledger.stats()["applied"] == 2, timeout=30, what="first lines delivered")
    agent.kill()

    # While the agent is dead: more lines, a rotation, and a new file whose last line is half written.
    with open(journal, "ab") as handle:
        handle.write(sale_line("J3", "SKU-2001", "3"))
    journal.rename(journal.with_name("journal.log.1"))
    half = sale_line("J6", "SKU-3001", "12")
    journal.write_bytes(sale_line("J4", "SKU-2002", "1") + sale_line("J5", "TR43", "1") + half[:30])
    agents(config)
    wait_for(lambda: sandbox.ledger.stats()["applied"] == 5, timeout=30, what="rest of the old file and the new one")
    with open(journal, "ab") as handle:
        handle.write(half[30:])
    wait_for(lambda: sandbox.ledger.stats()["applied"] == 6, timeout=30, what="the completed line")
    rows = sandbox.ledger.ledger_rows(0, 100)
    assert sorted(r["pos_transaction_id"] for r in rows) == ["J1", "J2", "J3", "J4", "J5", "J6"]
    assert ledger_totals(rows) == {
        "SKU-1001": Decimal(-1),
        "SKU-1002": Decimal(-3),  # J2's 2 plus J5 by its alias TR43
        "SKU-2001": Decimal(-3),
        "SKU-2002": Decimal(-1),
        "SKU-3001": Decimal(-12),  # never read as the half line
    }
    assert status_json(config, env)["exceptions_open"] == 0
