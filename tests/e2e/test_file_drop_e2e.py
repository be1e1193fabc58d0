"""End to end: ``possync run`` as a subprocess, the sandbox WMS over a real socket, a real folder."""

from __future__ import annotations

import csv
import json
import random
import signal
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agent.domain import Kind, make_event_id
from tests.support.helpers import (
    EXPORT_CSV,
    AgentProcess,
    drop,
    expected_totals,
    export_line_count,
    ledger_totals,
    run_cli,
    status_json,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
KIND = {"SALE": Kind.SALE, "RETURN": Kind.RETURN, "XFER_OUT": Kind.TRANSFER_OUT, "XFER_IN": Kind.TRANSFER_IN}


def expected_event_ids(export: Path = EXPORT_CSV) -> set[str]:
    with open(export, newline="", encoding="utf-8-sig") as handle:
        return {make_event_id("S001", r["txn_id"], int(r["line"]), KIND[r["type"]]) for r in csv.DictReader(handle)}


def assert_ledger_is_the_export(sandbox: SandboxServer) -> None:
    rows = sandbox.ledger.ledger_rows(0, 100_000)
    ids = [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an event was applied twice"
    assert set(ids) == expected_event_ids(), "the ledger lacks events or has foreign ones"
    assert ledger_totals(rows) == {k: v for k, v in expected_totals().items() if v}


@pytest.fixture
def env(token: str) -> dict[str, str]:
    return {"POSSYNC_TEST_TOKEN": token}


@pytest.fixture
def agent_factory(tmp_path: Path, env: dict[str, str]):
    started: list[AgentProcess] = []

    def make(config: Path) -> AgentProcess:
        process = AgentProcess(config, env).start()
        started.append(process)
        return process

    yield make
    for process in started:
        if process.alive():
            process.kill()


def ready(config: Path, env: dict[str, str]) -> bool:
    outbox = config.parent / "data" / "outbox.sqlite"
    return outbox.exists() and status_json(config, env).get("agent_running") is True


def test_sample_export_moves_wms_stock_by_exactly_the_pos_quantities(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory
) -> None:
    config = write_config(tmp_path, sandbox.url)
    agent = agent_factory(config)
    wait_for(lambda: ready(config, env), what="agent up")
    opening = {(r["sku"], r["location"]): Decimal(r["on_hand"]) for r in sandbox.ledger.all_stock()}
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), what="all lines at the WMS")
    wait_for(lambda: (tmp_path / "inbox" / "done" / EXPORT_CSV.name).exists(), what="file archived")
    assert_ledger_is_the_export(sandbox)
    closing = {(r["sku"], r["location"]): Decimal(r["on_hand"]) for r in sandbox.ledger.all_stock()}
    for sku, change in expected_totals().items():
        assert closing[(sku, "S001")] == opening[(sku, "S001")] + change, sku
    status = wait_for(lambda: (s := status_json(config, env))["pending"] == 0 and s, what="status settles")
    assert status["state"] == "green" and status["acked"] == export_line_count() and status["wms_reachable"] is True
    assert agent.stop() == 0
    assert status_json(config, env)["state"] == "grey"


def test_wms_refusing_connections_during_the_drop_loses_nothing(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory
) -> None:
    config = write_config(tmp_path, sandbox.url)
    agent_factory(config)
    wait_for(lambda: ready(config, env), what="agent up")
    sandbox.refuse(4.0)
    time.sleep(0.3)
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(lambda: (tmp_path / "inbox" / "done" / EXPORT_CSV.name).exists(), what="captured while offline")
    offline = wait_for(lambda: (s := status_json(config, env))["wms_reachable"] is False and s, what="offline seen")
    assert offline["pending"] == export_line_count() and offline["state"] == "amber"
    assert sandbox.ledger.stats()["applied"] == 0
    wait_for(
        lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=30, what="delivered after reconnect"
    )
    assert_ledger_is_the_export(sandbox)


def test_cold_start_with_the_wms_down_holds_then_delivers_everything(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory
) -> None:
    sandbox.refuse(3.0)
    time.sleep(0.3)
    config = write_config(tmp_path, sandbox.url)
    agent_factory(config)
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(
        lambda: (tmp_path / "inbox" / "done" / EXPORT_CSV.name).exists(),
        timeout=30,
        what="captured with no item master",
    )
    wait_for(
        lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
        timeout=40,
        what="delivered once the item master arrived",
    )
    assert_ledger_is_the_export(sandbox)
    assert wait_for(lambda: (s := status_json(config, env))["exceptions_open"] == 0 and s)["held"] == 0


def test_the_same_file_dropped_twice_changes_nothing_the_second_time(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory
) -> None:
    config = write_config(tmp_path, sandbox.url)
    agent_factory(config)
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), what="first drop delivered")
    wait_for(lambda: (tmp_path / "inbox" / "done" / EXPORT_CSV.name).exists())
    stock = sandbox.ledger.all_stock()
    drop(tmp_path / "inbox", EXPORT_CSV)
    drop(tmp_path / "inbox", EXPORT_CSV, name="renamed-copy.csv")
    wait_for(lambda: len(list((tmp_path / "inbox" / "done").iterdir())) == 3, what="both copies archived")
    time.sleep(1.0)
    assert sandbox.ledger.stats()["applied"] == export_line_count()
    assert sandbox.ledger.all_stock() == stock
    assert status_json(config, env)["exceptions_open"] == 0


def test_sigkill_mid_delivery_leaves_the_ledger_identical_to_a_clean_run(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory, token: str
) -> None:
    # Slow, small batches, and a WMS that sometimes applies a batch and then fails to answer.
    httpx.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"latency_ms": 150, "fail_after_commit_rate": 0.2, "seed": 7},
        headers={"Authorization": f"Bearer {token}"},
    )
    config = write_config(tmp_path, sandbox.url, batch_size=3)
    rng = random.Random(11)
    agent = agent_factory(config)
    drop(tmp_path / "inbox", EXPORT_CSV)
    kills = 0
    while kills < 4:
        before = sandbox.ledger.stats()["applied"]
        wait_for(lambda before=before: sandbox.ledger.stats()["applied"] > before, what="the new agent delivering")
        time.sleep(rng.uniform(0.0, 0.3))
        if sandbox.ledger.stats()["applied"] >= export_line_count():
            break
        agent.kill()
        kills += 1
        agent = agent_factory(config)
    assert kills >= 3, "the kills did not land mid-delivery"
    wait_for(
        lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
        timeout=60,
        what="delivery finished after restarts",
    )
    assert_ledger_is_the_export(sandbox)
    status = wait_for(lambda: (s := status_json(config, env))["pending"] == 0 and s, what="queue drained")
    assert status["acked"] == export_line_count() and status["exceptions_open"] == 0


def test_ctrl_c_mid_delivery_stops_cleanly_and_the_restart_finishes_exactly_once(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory, token: str
) -> None:
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"latency_ms": 150}, headers={"Authorization": f"Bearer {token}"})
    config = write_config(tmp_path, sandbox.url, batch_size=3)
    agent = agent_factory(config)
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(lambda: sandbox.ledger.stats()["applied"] > 0, what="delivery under way")
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGINT)  # what Ctrl+C in a console sends
    assert agent.proc.wait(timeout=20) == 0, agent.output()
    assert "Traceback" not in agent.output()
    assert status_json(config, env)["state"] == "grey"
    applied_at_stop = sandbox.ledger.stats()["applied"]
    assert applied_at_stop < export_line_count(), "delivery finished before the signal: nothing was tested"
    agent_factory(config)  # the lock was released: a new agent starts on the same data folder
    wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=60, what="the rest delivered")
    assert_ledger_is_the_export(sandbox)


def test_malformed_files_are_quarantined_or_excepted_and_the_agent_keeps_going(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory, token: str
) -> None:
    config = write_config(tmp_path, sandbox.url)
    config.write_text(config.read_text().replace('item_master_every = "1h"', 'item_master_every = "2s"'))
    agent = agent_factory(config)
    inbox = tmp_path / "inbox"
    header = "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\n"
    (tmp_path / "no-qty.csv").write_text(
        "txn_id,line,timestamp,register,type,item,uom,price,dest\nX1,1,2026-11-20T09:00:00-06:00,R2,SALE,SKU-1001,EA,1,\n"
    )
    (tmp_path / "mixed.csv").write_text(
        header
        + "M1,1,2026-11-20T09:00:00-06:00,R2,SALE,SKU-1001,1,EA,1,\n"
        + "M1,2,2026-11-20T09:00:00-06:00,R2,SALE,SKU-1002,two,EA,1,\n"
        + "M1,3,2026-11-20T09:00:00-06:00,R2,SALE,4006381333931,1,EA,1,\n"
    )
    drop(inbox, tmp_path / "no-qty.csv")
    drop(inbox, tmp_path / "mixed.csv")
    drop(inbox, EXPORT_CSV)
    wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count() + 1, what="good rows delivered")
    reason = wait_for(lambda: (p := inbox / "quarantine" / "no-qty.csv.reason.txt").exists() and p.read_text())
    assert "missing column 'qty' (for quantity)" in reason and (inbox / "quarantine" / "no-qty.csv").exists()
    assert (inbox / "done" / "mixed.csv").exists()
    assert agent.alive()

    listing = run_cli("exceptions", "list", "--config", str(config), env=env)
    assert listing.returncode == 0
    assert "BAD_NUMBER" in listing.stdout and "quantity 'two' is not a number" in listing.stdout
    assert "transaction M1, line 3" in listing.stdout and "'4006381333931' (as the POS wrote it)" in listing.stdout
    assert "mixed.csv row 3" in listing.stdout
    status = status_json(config, env)
    assert status["state"] == "red" and status["exceptions_open"] == 2 and status["held"] == 1

    exceptions = {
        e["code"]: e
        for e in __import__("json").loads(
            run_cli("exceptions", "list", "--json", "--config", str(config), env=env).stdout
        )
    }
    unknown, unreadable = exceptions["UNKNOWN_ITEM"], exceptions["BAD_NUMBER"]
    retry = run_cli("exceptions", "retry", str(unknown["id"]), "--config", str(config), env=env)
    assert retry.returncode == 1 and "still not mappable" in retry.stderr
    retry = run_cli("exceptions", "retry", str(unreadable["id"]), "--config", str(config), env=env)
    assert retry.returncode == 1 and "could not read" in retry.stderr
    resolve = run_cli(
        "exceptions",
        "resolve",
        str(unreadable["id"]),
        "--note",
        "re-keyed at the till",
        "--config",
        str(config),
        env=env,
    )
    assert resolve.returncode == 0 and "resolved" in resolve.stdout

    # The WMS learns the item: the next item-master refresh releases the held line by itself.
    httpx.post(
        f"{sandbox.url}/_sandbox/items",
        json=[{"sku": "SKU-9001", "barcodes": ["4006381333931"]}],
        headers={"Authorization": f"Bearer {token}"},
    )
    wait_for(
        lambda: sandbox.ledger.stats()["applied"] == export_line_count() + 2, timeout=30, what="held line delivered"
    )
    assert wait_for(lambda: (s := status_json(config, env))["exceptions_open"] == 0 and s)["state"] == "green"


def test_a_config_mistake_stops_the_start_with_file_line_and_key(tmp_path: Path, env: dict[str, str]) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace("batch_size = 50", "batch_size = 0"))
    result = run_cli("run", "--config", str(config), env=env, timeout=30)
    assert result.returncode == 2
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "batch_size" in text)
    assert f"{config}:{line}: wms.batch_size:" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_missing_secret_stops_the_start_and_says_how_to_fix_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", token_env="POSSYNC_UNSET_TOKEN")
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 1 and "POSSYNC_UNSET_TOKEN is not set" in result.stderr


def test_a_second_agent_on_the_same_data_folder_refuses_to_start(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory
) -> None:
    config = write_config(tmp_path, sandbox.url)
    agent_factory(config)
    wait_for(lambda: ready(config, env), what="first agent up")
    second = run_cli("run", "--config", str(config), env=env, timeout=30)
    assert second.returncode == 1 and "another possync agent" in second.stderr


def test_status_exit_codes_follow_the_state(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], agent_factory
) -> None:
    config = write_config(tmp_path, sandbox.url)
    assert run_cli("status", "--config", str(config), env=env).returncode == 3  # never ran
    never = run_cli("status", "--json", "--config", str(config), env=env)
    record = json.loads(never.stdout)  # monitoring tools get JSON even before the first start
    assert never.returncode == 3 and record["state"] == "grey" and record["pending"] == 0
    assert "has not run with this config yet" in record["reasons"][0]
    agent = agent_factory(config)
    wait_for(lambda: ready(config, env))
    shown = run_cli("status", "--config", str(config), env=env)
    assert shown.returncode == 0 and "GREEN" in shown.stdout and "WMS reachable  yes" in shown.stdout
    agent.stop()
    stopped = run_cli("status", "--config", str(config), env=env)
    assert stopped.returncode == 3 and "not running" in stopped.stdout


def test_demo_runs_and_reconciles() -> None:
    result = run_cli("demo", "--offline-for", "1", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: the WMS ledger matches the POS export." in result.stdout
