"""End-to-end latency: the POS side finished → the WMS acknowledged, with the real agent and sandbox processes.

One agent (``possync run``) has three sources; each gets ``count`` transactions at a steady ``rate``,
one source after the other:
- file drop: a 3-line CSV per transaction, written aside as ``.<name>.part`` in the watched folder and
  renamed into place (the documented safe way for a POS); the POS side is done when the rename returns;
- HTTP: one 3-line transaction per ``POST /api/v1/transactions``; done when the 202 has arrived;
- serial: one receipt of the sample capture (4 item lines, transaction id changed) written to the
  master side of a pty pair whose slave is the tap's port; done when the last byte (the cut) is written.
A transaction's latency is the latest ``acked_at`` of its movements in the agent's outbox (read
read-only) minus the moment the POS side was done; both are the wall clock of this machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.agent_proc import IN_SYNC, AgentRun, csv_source, http_source, serial_source, spawn_agent
from bench.common import ROOT, SKUS, progress, start_sandbox, wait_until

SAMPLE = ROOT / "tests" / "fixtures" / "serial_tap" / "sample-capture" / "input.escpos"
CUT = b"\x1dV\x00"
SAMPLE_TXN = b"R3-005000"  # the first receipt's transaction id (TXN line and barcode)
CSV_HEADER = "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\n"

Sender = Callable[[int], str]
"""Hands transaction ``i`` to the agent the way the POS does; returns its transaction id."""


@dataclass(frozen=True)
class Driver:
    """One POS path into the agent: its sender and how many movements each of its transactions makes."""

    name: str
    send: Sender
    lines: int


def first_receipt() -> bytes:
    """Return the first receipt of the sample ESC/POS capture, cut included."""
    data = SAMPLE.read_bytes()
    return data[: data.index(CUT) + len(CUT)]


def csv_text(txn: str) -> str:
    """Return a POS export of one 3-line sale."""
    rows = [f"{txn},{n},2026-11-20T10:00:00-06:00,R1,SALE,{SKUS[n]},1,EA,19.99,\n" for n in (1, 2, 3)]
    return CSV_HEADER + "".join(rows)


def file_sender(inbox: Path, *, rename: bool) -> Sender:
    """Return a sender that writes one CSV per transaction into the inbox.

    ``rename``: write ``.<name>.part`` beside it, close it, rename it into place (done when the rename
    returns); else write ``<name>`` in place (done when it is closed).
    """
    prefix = "FR" if rename else "FW"

    def send(i: int) -> str:
        txn = f"{prefix}-{i:06d}"
        target = inbox / f"{txn}.csv"
        path = inbox / f".{txn}.csv.part" if rename else target
        with open(path, "w", encoding="utf-8") as out:
            out.write(csv_text(txn))
        if rename:
            path.replace(target)
        return txn

    return send


def http_sender(agent: AgentRun) -> Sender:
    """Return a sender that POSTs one 3-line transaction and checks the 202."""

    def send(i: int) -> str:
        txn = f"H-{i:06d}"
        lines = [{"line_no": n, "item": SKUS[n], "quantity": "1", "unit_price": "19.99"} for n in (1, 2, 3)]
        doc = {"transaction_id": txn, "terminal_id": "R1", "occurred_at": "2026-11-20T10:00:00-06:00", "kind": "sale"}
        response = agent.http.post("/api/v1/transactions", json={**doc, "lines": lines})
        if response.status_code != 202:
            raise RuntimeError(f"http_ingest answered {response.status_code}: {response.text[:300]}")
        return txn

    return send


def serial_sender(master: int, receipt: bytes) -> Sender:
    """Return a sender that writes one receipt (its own transaction id) to the pty master."""

    def send(i: int) -> str:
        txn = f"R3-{100_000 + i:06d}"
        view = memoryview(receipt.replace(SAMPLE_TXN, txn.encode()))
        while view:
            view = view[os.write(master, view) :]
        return txn

    return send


def drive(driver: Driver, count: int, rate: float) -> dict[str, float]:
    """Send ``count`` transactions at a steady ``rate``; return each one's wall-clock time when the POS was done."""
    done: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        txn = driver.send(i)
        done[txn] = time.time()
    return done


def acked_at(outbox: Path, txns: set[str], lines: int) -> dict[str, float]:
    """Return the latest ``acked_at`` of each transaction in ``txns`` whose ``lines`` movements are all acked."""
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT pos_transaction_id, COUNT(*), COUNT(acked_at), MAX(acked_at) FROM movement "
            "GROUP BY pos_transaction_id"
        ).fetchall()
    finally:
        conn.close()
    return {txn: float(last) for txn, total, acked, last in rows if txn in txns and total == acked == lines}


def latencies(agent: AgentRun, driver: Driver, count: int, rate: float) -> list[float]:
    """Drive one source, wait until the WMS has acknowledged all of it, return the latencies in seconds."""
    done = drive(driver, count, rate)
    txns = set(done)
    found: dict[str, float] = {}

    def complete() -> bool:
        found.update(acked_at(agent.outbox, txns, driver.lines))
        return len(found) == count

    wait_until(complete, f"{driver.name}: all {count} transactions acknowledged", timeout=120, interval=0.5)
    return [found[txn] - done[txn] for txn in done]


def open_pty() -> tuple[int, int, str]:
    """Return a raw pseudo-terminal pair (master, slave) and the slave's path."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def run_once(count: int, rate: float) -> dict[str, list[float]]:
    """Run one agent with the three sources and return the latencies of each POS path."""
    master, slave, port = open_pty()
    receipt = first_receipt()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inbox = folder / "inbox"
        inbox.mkdir()
        sandbox = start_sandbox(folder / "wms")
        agent = spawn_agent(
            folder,
            sandbox.url,
            [csv_source("./inbox"), http_source(), serial_source(port)],
        )
        try:
            agent.wait_ready()
            agent.wait_log(IN_SYNC)
            drivers = [
                Driver("file drop, renamed in", file_sender(inbox, rename=True), 3),
                Driver("file drop, written in place", file_sender(inbox, rename=False), 3),
                Driver("http_ingest", http_sender(agent), 3),
                Driver("serial_tap", serial_sender(master, receipt), receipt.count(b" x SKU-")),
            ]
            results = {}
            for driver in drivers:
                progress(f"    latency: {driver.name}, {count} transactions at {rate:g}/s")
                results[driver.name] = latencies(agent, driver, count, rate)
            return results
        finally:
            agent.stop()
            sandbox.stop()
            os.close(master)
            os.close(slave)


def summary(values: list[float]) -> str:
    """Return a one-line JSON summary (for debugging a run by hand)."""
    ordered = sorted(values)
    return json.dumps({"n": len(ordered), "min": ordered[0], "max": ordered[-1]})
