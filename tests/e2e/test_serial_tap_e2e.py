"""End to end: ``possync run`` as a subprocess with a serial_tap source on pseudo-terminals, the sandbox WMS
over a real socket. Receipts are made by python-escpos; what they mean is checked against the WMS ledger.
"""

from __future__ import annotations

import gzip
import random
import re
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from agent.domain import Kind, make_event_id
from tests.support.helpers import AgentProcess, ledger_totals, run_cli, status_json, wait_for, write_config
from tests.support.serial_tap import SAMPLE_CAPTURE, PtyPair, Sale, mixed_sales, receipt_bytes
from wms_client.sandbox.server import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need POSIX")]

SAMPLE = SAMPLE_CAPTURE.read_bytes()


def tap_source(port: str, passthrough: str | None = None, idle_gap: str = "0.5s") -> str:
    through = f'passthrough = "{passthrough}"\n' if passthrough else ""
    return f"""
[[sources]]
name = "receipt-tap"
kind = "serial_tap"
port = "{port}"
{through}baudrate = 9600
template = "generic-58mm"
idle_gap = "{idle_gap}"
reconnect_every = "0.5s"
"""


def read_sample_independently() -> tuple[set[str], dict[str, Decimal]]:
    """Event ids and stock deltas of the sample capture, read with plain regexes (not possync's decoder)."""
    ids: set[str] = set()
    deltas: dict[str, Decimal] = {}
    for receipt in SAMPLE.decode("latin-1").split("\x1dV\x00")[:-1]:
        txn = re.search(r"TXN (\S+)", receipt).group(1)  # type: ignore[union-attr]
        is_return = "*** RETURN ***" in receipt
        for line_no, (qty, sku) in enumerate(re.findall(r"(\d+) x (SKU-\d+)", receipt), 1):
            ids.add(make_event_id("S001", txn, line_no, Kind.RETURN if is_return else Kind.SALE))
            deltas[sku] = deltas.get(sku, Decimal(0)) + (Decimal(qty) if is_return else -Decimal(qty))
    return ids, deltas


@pytest.fixture
def env(token: str) -> dict[str, str]:
    return {"POSSYNC_TEST_TOKEN": token}


@pytest.fixture
def pairs() -> Iterator[list[PtyPair]]:
    made: list[PtyPair] = []
    yield made
    for pair in made:
        pair.close()


@pytest.fixture
def agents(env: dict[str, str]) -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.alive():
            agent.kill()


def start(config: Path, env: dict[str, str], agents: list[AgentProcess], syncs: int = 1) -> AgentProcess:
    """Start ``possync run`` and wait until its tap is in sync with the line (the ``syncs``-th time in its log)."""
    agent = AgentProcess(config, env).start()
    agents.append(agent)
    wait_for(
        lambda: agent.output().count("capturing receipts from here") >= syncs or not agent.alive(),
        timeout=30,
        what="the tap in sync",
    )
    assert agent.alive(), agent.output()
    return agent


def test_receipts_from_the_cable_reach_the_wms_and_the_printer_gets_every_byte(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], pairs: list[PtyPair], agents: list[AgentProcess]
) -> None:
    pos, printer = PtyPair(tmp_path / "ttyPOS"), PtyPair(tmp_path / "ttyPRINTER")
    pairs += [pos, printer]
    printer.start_reading()
    config = write_config(tmp_path, sandbox.url, sources=tap_source(pos.path, printer.path))
    agent = start(config, env, agents)
    sales = mixed_sales(8, start=7100)
    wrong_total = receipt_bytes(Sale("R3-009999", [("SKU-1001", 1, False)])).replace(
        b"TOTAL                      89.00", b"TOTAL                      98.00"
    )
    stream = SAMPLE + b"".join(data for _, data in sales) + wrong_total
    pos.write(stream, random.Random(7), pause=0.0002)

    sample_ids, sample_deltas = read_sample_independently()
    expected_ids = sample_ids.union(*(sale.event_ids() for sale, _ in sales))
    wait_for(lambda: sandbox.ledger.stats()["applied"] >= len(expected_ids), timeout=30, what="all lines at the WMS")
    rows = sandbox.ledger.ledger_rows(0, 100_000)
    assert sorted(r["event_id"] for r in rows) == sorted(expected_ids)
    expected_deltas = dict(sample_deltas)
    for sale, _ in sales:
        for sku, delta in sale.deltas().items():
            expected_deltas[sku] = expected_deltas.get(sku, Decimal(0)) + delta
    assert ledger_totals(rows) == {k: v for k, v in expected_deltas.items() if v}
    wait_for(lambda: printer.received() == stream, what="the printer got every byte unchanged")

    listing = run_cli("exceptions", "list", "--config", str(config), env=env)
    assert "RECEIPT_UNPARSED" in listing.stdout and "TXN R3-009999" in listing.stdout, listing.stdout
    status = wait_for(
        lambda: (s := status_json(config, env))["pending"] == 0 and "receipt-tap" in s["sources"] and s,
        what="queue drained and the source's health published",
    )
    assert status["exceptions_open"] == 1 and status["state"] == "red"
    tap = status["sources"]["receipt-tap"]
    assert tap["state"] == "ok" and tap["captured"] == len(expected_ids) and tap["last_error"] is None
    assert agent.stop() == 0


def test_sigkill_mid_stream_neither_loses_nor_repeats_a_receipt_the_agent_read(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], pairs: list[PtyPair], agents: list[AgentProcess]
) -> None:
    pos = PtyPair(tmp_path / "ttyPOS")
    pairs.append(pos)
    config = write_config(tmp_path, sandbox.url, sources=tap_source(pos.path))
    rng = random.Random(17)
    must_capture: list[Sale] = []
    lost = 0
    for round_no in range(3):
        agent = start(config, env, agents, syncs=round_no + 1)
        sales = mixed_sales(6, start=7200 + 100 * round_no, seed=round_no)
        stream = b"".join(data for _, data in sales)
        ends = [sum(len(d) for _, d in sales[: n + 1]) for n in range(len(sales))]
        written = 0
        stop = threading.Event()

        def feed(stream: bytes = stream, stop: threading.Event = stop) -> None:
            nonlocal written
            for start_at in range(0, len(stream), 23):
                if stop.is_set():
                    return
                pos.write(stream[start_at : start_at + 23])
                written = start_at + len(stream[start_at : start_at + 23])
                time.sleep(0.002)

        writer = threading.Thread(target=feed)
        writer.start()
        time.sleep(rng.uniform(0.1, 0.35))
        agent.kill()
        stop.set()
        writer.join()
        read = written - pos.unread()  # what the dead agent took off the wire
        pos.drop_unread()  # the rest is lost, as on a real line while nobody listens
        done = [sale for (sale, _), end in zip(sales, ends, strict=True) if end <= read]
        assert len(done) < len(sales), "the kill did not land mid-stream"
        must_capture += done
        lost += len(sales) - len(done)
    agent = start(config, env, agents, syncs=4)
    last = Sale("R3-007999", [("SKU-1001", 1, False)])
    pos.write(receipt_bytes(last))
    must_capture.append(last)

    expected = set().union(*(sale.event_ids() for sale in must_capture))
    wait_for(lambda: sandbox.ledger.stats()["applied"] >= len(expected), timeout=30, what="delivered after restarts")
    time.sleep(1.0)
    assert sorted(r["event_id"] for r in sandbox.ledger.ledger_rows(0, 100_000)) == sorted(expected)
    # exactly once at the source: one capture (one archive file) per receipt read, none twice
    archive = tmp_path / "data" / "receipts" / "receipt-tap"
    captured = [
        re.search(rb"TXN (\S+)", gzip.decompress(p.read_bytes())).group(1).decode()  # type: ignore[union-attr]
        for p in sorted(archive.glob("*/[0-9]*.escpos.gz"))
    ]
    assert sorted(captured) == sorted(sale.txn for sale in must_capture)
    assert lost >= 3
    assert agent.stop() == 0
