"""End to end: a store sells offline for a (simulated) day; its stock view stays right; it reconnects; the
day reconciles clean. Real agent subprocess, real sandbox WMS over a socket, real folders and CSV files."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agent.demo import pos_totals
from tests.support.helpers import (
    EXPORT_CSV,
    ITEMS_CSV,
    AgentProcess,
    drop,
    enable_api,
    export_line_count,
    free_port,
    run_cli,
    status_json,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
DAY = "2026-11-20"  # the business day of every line of the sample export


def split_export(folder: Path, parts: int) -> list[Path]:
    with open(EXPORT_CSV, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // parts)
    paths = []
    for i in range(parts):
        path = folder / f"sales-{i + 1}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows[i * size : (i + 1) * size])
        paths.append(path)
    return paths


def view(config: Path, env: dict[str, str]) -> dict[str, dict[str, str]]:
    result = run_cli("stock", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    return {r["sku"]: r for r in json.loads(result.stdout) if r["location"] == "S001"}


def exported(path: Path) -> dict[str, Decimal]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {r["sku"]: Decimal(r["effective_on_hand"]) for r in csv.DictReader(handle) if r["location"] == "S001"}


def test_a_day_offline_keeps_the_stock_view_right_and_reconciles_clean_after_reconnect(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    env = {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": "api-secret"}
    config = write_config(tmp_path, sandbox.url)
    api = enable_api(config, free_port())
    text = config.read_text().replace('item_master_every = "1h"', 'item_master_every = "1h"\nsnapshot_every = "1s"')
    config.write_text(text + '\n[stock]\nexport_dir = "./pos-import"\nexport_every = "1s"\n')
    export = tmp_path / "pos-import" / "stock.csv"
    agent = AgentProcess(config, env).start()
    try:
        outbox = tmp_path / "data" / "outbox.sqlite"
        wait_for(
            lambda: outbox.exists() and status_json(config, env).get("snapshot_version") is not None,
            what="first snapshot",
        )
        opening = {r["sku"]: Decimal(r["on_hand"]) for r in sandbox.ledger.all_stock() if r["location"] == "S001"}
        assert {s: Decimal(r["effective_on_hand"]) for s, r in view(config, env).items()} == opening

        # The store loses the WMS for the day: every protocol request (pushes and snapshots) fails.
        faults = f"{sandbox.url}/_sandbox/faults"
        httpx.post(faults, json={"throttle_rate": 1.0}, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        wait_for(lambda: status_json(config, env)["wms_reachable"] is False, timeout=30, what="offline seen")
        expected = dict(opening)
        for chunk in split_export(tmp_path / "chunks", 4):
            drop(tmp_path / "inbox", chunk)
            for sku, change in pos_totals(chunk, ITEMS_CSV).items():
                expected[sku] = expected.get(sku, Decimal(0)) + change
            archived = tmp_path / "inbox" / "done" / chunk.name
            wait_for(archived.exists, what=f"{chunk.name} captured")
            records = view(config, env)
            assert {s: Decimal(r["effective_on_hand"]) for s, r in records.items()} == expected
            assert all(r["snapshot_on_hand"] == str(opening.get(s, 0)) for s, r in records.items())
            wait_for(lambda: exported(export) == expected, what="the POS export follows the sales offline")
        assert sandbox.ledger.stats()["applied"] == 0
        offline_report = run_cli("reconcile", "--day", DAY, "--config", str(config), env=env)
        assert offline_report.returncode == 1 and "SKU(s) differ" in offline_report.stdout

        httpx.post(faults, json={"throttle_rate": 0.0}, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=60, what="delivered")
        closing = {r["sku"]: Decimal(r["on_hand"]) for r in sandbox.ledger.all_stock() if r["location"] == "S001"}
        assert closing == {s: q for s, q in expected.items() if s in closing}

        def settled() -> bool:
            records = view(config, env)
            return all(r["pending_delta"] == "0" for r in records.values()) and {
                s: Decimal(r["effective_on_hand"]) for s, r in records.items()
            } == {s: q for s, q in expected.items() if s in records}

        wait_for(settled, timeout=30, what="a snapshot that includes every sale, and nothing pending")
        one = httpx.get(
            f"{api}/api/v1/stock", params={"sku": "SKU-1001"}, headers={"Authorization": "Bearer api-secret"}
        )
        assert one.status_code == 200 and one.json()[0]["effective_on_hand"] == str(expected["SKU-1001"])
        assert set(one.json()[0]) == {
            "sku", "location", "snapshot_on_hand", "pending_delta", "effective_on_hand",
            "allocated", "available", "snapshot_as_of", "snapshot_age_s",
        }  # fmt: skip

        report = run_cli("reconcile", "--day", DAY, "--json", "--config", str(config), env=env)
        assert report.returncode == 0, report.stdout
        data = json.loads(report.stdout)
        assert data["clean"] is True and data["movements"] == export_line_count()
        assert Path(data["csv"]).exists()
    finally:
        agent.stop()
