"""End to end against a real Tryton: ``possync run`` as a subprocess, trytond over a socket, a real folder."""

from __future__ import annotations

import csv
import random
import time
from decimal import Decimal
from pathlib import Path

import pytest

from agent.domain import Kind, make_event_id
from tests.support.helpers import (
    CSV_SOURCE,
    EXPORT_CSV,
    AgentProcess,
    drop,
    expected_totals,
    export_line_count,
    status_json,
    wait_for,
)
from tests.support.tryton import POSSYNC_PASSWORD, TrytonServer, tryton_wms_toml

pytestmark = pytest.mark.e2e
KIND = {"SALE": Kind.SALE, "RETURN": Kind.RETURN, "XFER_OUT": Kind.TRANSFER_OUT, "XFER_IN": Kind.TRANSFER_IN}
ENV = {"POSSYNC_TRYTON_PASSWORD": POSSYNC_PASSWORD}


def expected_event_ids(export: Path = EXPORT_CSV) -> set[str]:
    with open(export, newline="", encoding="utf-8-sig") as handle:
        return {make_event_id("S001", r["txn_id"], int(r["line"]), KIND[r["type"]]) for r in csv.DictReader(handle)}


def transferred_to(export: Path = EXPORT_CSV) -> dict[tuple[str, str], Decimal]:
    """Quantity per (SKU, counterpart) that the export transfers out of the store."""
    out: dict[tuple[str, str], Decimal] = {}
    with open(export, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if row["type"] == "XFER_OUT":
                key = (row["item"], row["dest"])
                out[key] = out.get(key, Decimal(0)) + Decimal(row["qty"])
    return out


def write_tryton_config(folder: Path, server: TrytonServer, batch_size: int = 50) -> Path:
    text = f"""
[agent]
store_id = "S001"
timezone = "America/Chicago"
data_dir = "./data"

{tryton_wms_toml(server, batch_size=str(batch_size), timeout_s="5", item_master_every='"1h"')}
[sync]
sla_s = 60
max_retry_delay = "2s"
{CSV_SOURCE.format(settle="0.2s")}
"""
    path = folder / "possync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_tryton_holds_exactly_the_export(server: TrytonServer, opening: dict[str, dict[str, Decimal]]) -> None:
    admin = server.rpc()
    try:
        shipments = admin.shipments_by_reference()
        done = {ref: [s for s in found if s["state"] == "done"] for ref, found in shipments.items()}
        assert {ref for ref, found in done.items() if found} == expected_event_ids(), "events missing or foreign"
        doubled = {ref: found for ref, found in done.items() if len(found) > 1}
        assert not doubled, f"an event was applied twice: {doubled}"
        store = admin.stock(admin.storage_of("S001"))
        dc = admin.stock(admin.storage_of("DC01"))
    finally:
        admin.close()
    for sku, change in expected_totals().items():
        assert store[sku] == opening["S001"][sku] + change, sku
    moved = transferred_to()
    for sku in opening["DC01"]:
        assert dc[sku] == opening["DC01"][sku] + moved.get((sku, "DC01"), Decimal(0)), sku
    assert moved, "the sample export has a transfer"


def opening_stock(server: TrytonServer) -> dict[str, dict[str, Decimal]]:
    admin = server.rpc()
    try:
        return {code: admin.stock(admin.storage_of(code)) for code in ("S001", "DC01")}
    finally:
        admin.close()


def done_count(server: TrytonServer) -> int:
    admin = server.rpc()
    try:
        return sum(1 for found in admin.shipments_by_reference().values() for s in found if s["state"] == "done")
    finally:
        admin.close()


def status(config: Path) -> dict[str, object]:
    """``possync status --json``, or an empty record before the agent has created its outbox."""
    if not (config.parent / "data" / "outbox.sqlite").exists():
        return {}
    return status_json(config, ENV)


@pytest.fixture
def agents():
    started: list[AgentProcess] = []

    def make(config: Path) -> AgentProcess:
        process = AgentProcess(config, ENV).start()
        started.append(process)
        return process

    yield make
    for process in started:
        if process.alive():
            process.kill()


def test_a_day_of_sales_returns_and_a_transfer_leaves_tryton_stock_exactly_as_expected(
    tmp_path: Path, tryton: TrytonServer, agents
) -> None:
    opening = opening_stock(tryton)
    config = write_tryton_config(tmp_path, tryton)
    agent = agents(config)
    drop(tmp_path / "inbox", EXPORT_CSV)
    record = wait_for(
        lambda: (s := status(config)).get("acked") == export_line_count() and s,
        timeout=120,
        what="every line delivered to Tryton",
    )
    assert record["pending"] == 0 and record["exceptions_open"] == 0 and record["held"] == 0
    assert_tryton_holds_exactly_the_export(tryton, opening)
    assert agent.stop() == 0


def test_sigkill_between_tryton_applying_and_the_local_ack_applies_nothing_twice(
    tmp_path: Path, tryton: TrytonServer, agents
) -> None:
    """Freeze Tryton while the agent's requests are in flight, SIGKILL the agent, thaw Tryton, restart."""
    opening = opening_stock(tryton)
    config = write_tryton_config(tmp_path, tryton, batch_size=4)
    rng = random.Random(5)
    agent = agents(config)
    drop(tmp_path / "inbox", EXPORT_CSV)
    kills = 0
    while kills < 4:
        before = done_count(tryton)
        wait_for(lambda before=before: done_count(tryton) > before, timeout=60, what="the agent delivering")
        if done_count(tryton) >= export_line_count() - 8:
            break
        tryton.suspend()  # the agent's next request is sent and hangs: Tryton has it, the agent has no answer
        time.sleep(rng.uniform(0.3, 1.0))
        agent.kill()
        tryton.resume()  # Tryton finishes what the dead agent asked for
        kills += 1
        agent = agents(config)
    assert kills >= 3, "the kills did not land mid-delivery"
    wait_for(
        lambda: status(config).get("acked") == export_line_count(),
        timeout=180,
        what="delivery finished after the restarts",
    )
    assert_tryton_holds_exactly_the_export(tryton, opening)
    assert status_json(config, ENV)["exceptions_open"] == 0
