"""Hostile files and records beside valid ones, end to end: the real agent, real watched folders, the sandbox WMS.

One agent runs four sources: CSV, JSON lines and POSLog file drops and the http_ingest endpoint. Each
inbox gets whole hostile files (garbage bytes, entity bombs, broken headers) and valid files that
carry hostile records between valid ones. Valid records reach the WMS ledger exactly once; hostile
files are quarantined with a reason file beside them; hostile records become open exceptions with
a reason; the agent never stops. The hostile content is generated from a fixed seed (reproducible).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from agent.domain import Kind, make_event_id
from tests.support.helpers import AgentProcess, drop, enable_api, free_port, status_json, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
API_TOKEN = "neighbours-api-token-4711"
SOURCES = """
[[sources]]
name = "csv-drop"
kind = "file_drop"
path = "./csv"
format = "csv"
default_kind = "sale"
settle = "0.2s"
rescan_every = "1s"
[sources.columns]
pos_transaction_id = "txn"
line_no = "line"
occurred_at = "at"
item = "item"
quantity = "qty"

[[sources]]
name = "jsonl-drop"
kind = "file_drop"
path = "./jsonl"
format = "jsonl"
settle = "0.2s"
rescan_every = "1s"

[[sources]]
name = "poslog-drop"
kind = "file_drop"
path = "./poslog"
format = "poslog"
settle = "0.2s"
open_timeout = "2s"  # truncated.xml is waited for this long (its writer may still be at it), then quarantined
rescan_every = "1s"

[[sources]]
name = "pos-api"
kind = "http_ingest"
"""
HOSTILE_VALUES = ["", "NaN", "1e999999", "9" * 40, "-", "SKU-NOPE", "2026-02-30T09:00:00", "\u202e", "'; DROP TABLE x"]


def hostile_csv_rows(rng: random.Random, n: int) -> list[str]:
    rows = []
    for i in range(n):
        cells = [f"BAD-CSV-{i}", "1", "2026-11-20T09:00:00", "SKU-1001", "2"]
        cells[rng.randrange(1, 5)] = rng.choice(HOSTILE_VALUES)
        rows.append(",".join(cells))
    return rows


def txn(txn_id: str, sku: str = "SKU-1001", qty: object = "1") -> dict[str, object]:
    return {
        "transaction_id": txn_id,
        "occurred_at": "2026-11-20T09:00:00",
        "kind": "sale",
        "lines": [{"line_no": 1, "item": sku, "quantity": qty}],
    }


def poslog_txn(seq: int, qty: str = "1") -> str:
    return (
        f"<Transaction><RetailStoreID>1</RetailStoreID><WorkstationID>7</WorkstationID><SequenceNumber>{seq}"
        "</SequenceNumber><BusinessDayDate>2026-11-20</BusinessDayDate><EndDateTime>2026-11-20T10:00:00</EndDateTime>"
        f"<RetailTransaction><LineItem><SequenceNumber>1</SequenceNumber><Sale><ItemID>SKU-1002</ItemID><Quantity>{qty}"
        "</Quantity></Sale></LineItem></RetailTransaction></Transaction>"
    )


def test_valid_records_reach_the_wms_and_hostile_ones_are_quarantined_with_reasons(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    rng = random.Random(9)
    config = write_config(tmp_path, sandbox.url, sources=SOURCES)
    api = enable_api(config, free_port())
    env = {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN}
    staging = tmp_path / "staging"
    staging.mkdir()
    expected: set[str] = set()
    hostile_files: dict[str, list[str]] = {"csv": [], "jsonl": [], "poslog": []}
    bad_records = 0

    # CSV: a valid file with hostile rows between valid ones, and whole hostile files.
    good_rows = [f"GOOD-CSV-{i},1,2026-11-20T09:00:00,SKU-1001,1" for i in range(20)]
    expected |= {make_event_id("S001", f"GOOD-CSV-{i}", 1, Kind.SALE) for i in range(20)}
    bad_rows = hostile_csv_rows(rng, 15)
    bad_records += len(bad_rows)
    mixed = good_rows + bad_rows
    rng.shuffle(mixed)
    (staging / "mixed.csv").write_text("txn,line,at,item,qty\n" + "\n".join(mixed) + "\n")
    (staging / "garbage.csv").write_bytes(bytes(rng.randrange(256) for _ in range(500)))
    (staging / "wrong-header.csv").write_text("a,b,c\n1,2,3\n")
    hostile_files["csv"] += ["garbage.csv", "wrong-header.csv"]

    # JSON lines: valid lines between garbage, non-objects, wrong values, deep nesting.
    lines = [json.dumps(txn(f"GOOD-JSONL-{i}")) for i in range(20)]
    expected |= {make_event_id("S001", f"GOOD-JSONL-{i}", 1, Kind.SALE) for i in range(20)}
    bad_lines = ["{not json", "[]", "42", '"text"', "[" * 5000, json.dumps(txn("BAD-J1", qty="NaN"))]
    bad_lines += [json.dumps(txn(f"BAD-J{i}", qty=rng.choice(["x", "1e999999", None, "-", ""]))) for i in range(2, 8)]
    bad_records += len(bad_lines)
    all_lines = lines + bad_lines
    rng.shuffle(all_lines)
    (staging / "mixed.jsonl").write_text("\n".join(all_lines) + "\n")
    (staging / "binary.jsonl").write_bytes(b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(200)))
    bad_records += 1  # the binary file is read line by line: at least one issue (counted loosely below)

    # POSLog: a valid file with broken transactions inside; bombs and garbage as whole files.
    body = "".join(poslog_txn(100 + i) for i in range(10)) + poslog_txn(999, qty="NaN") + poslog_txn(998, qty="x")
    expected |= {make_event_id("S001", f"1-7-{100 + i}-20261120", 1, Kind.SALE) for i in range(10)}
    bad_records += 2
    (staging / "mixed.xml").write_text(f'<?xml version="1.0"?><POSLog>{body}</POSLog>')
    (staging / "laughs.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><POSLog>&c;</POSLog>'
    )
    (staging / "xxe.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><POSLog>&e;</POSLog>'
    )
    (staging / "truncated.xml").write_text(f'<?xml version="1.0"?><POSLog>{poslog_txn(500)[:-40]}')
    hostile_files["poslog"] += ["laughs.xml", "xxe.xml", "truncated.xml"]

    agent = AgentProcess(config, env).start()
    try:
        wait_for(
            lambda: (
                status_json(config, env).get("agent_running")
                if (tmp_path / "data" / "outbox.sqlite").exists()
                else None
            ),
            what="agent up",
        )
        for name in ["mixed.csv", "garbage.csv", "wrong-header.csv"]:
            drop(tmp_path / "csv", staging / name)
        for name in ["mixed.jsonl", "binary.jsonl"]:
            drop(tmp_path / "jsonl", staging / name)
        for name in ["mixed.xml", "laughs.xml", "xxe.xml", "truncated.xml"]:
            drop(tmp_path / "poslog", staging / name)

        # http_ingest: hostile bodies are refused with a reason and store nothing; valid ones are delivered.
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        refused = 0
        for body in [
            b"",
            b"{",
            b"[]",
            b"[" * 5000 + b"]" * 5000,
            json.dumps(txn("BAD-API", qty="NaN")).encode(),
            b"\xff\xfe\x00",
        ]:
            answer = httpx.post(f"{api}/api/v1/transactions", content=body, headers=headers, timeout=10)
            assert answer.status_code in (400, 422) and answer.json()["message"], (body[:20], answer.text)
            refused += 1
        for i in range(10):
            answer = httpx.post(f"{api}/api/v1/transactions", json=txn(f"GOOD-API-{i}", "SKU-1003"), headers=headers)
            assert answer.status_code == 202, answer.text
            expected.add(make_event_id("S001", f"GOOD-API-{i}", 1, Kind.SALE))

        wait_for(
            lambda: sandbox.ledger.stats()["applied"] >= len(expected), timeout=60, what="valid records at the WMS"
        )
        for folder, names in hostile_files.items():
            for name in names:
                reason = tmp_path / folder / "quarantine" / f"{name}.reason.txt"
                wait_for(reason.exists, timeout=30, what=f"{name} quarantined")
                assert "Reason:" in reason.read_text() and (tmp_path / folder / "quarantine" / name).exists()
        for folder, name in [("csv", "mixed.csv"), ("jsonl", "mixed.jsonl"), ("poslog", "mixed.xml")]:
            wait_for((tmp_path / folder / "done" / name).exists, timeout=30, what=f"{name} archived")
        applied = {r["event_id"] for r in sandbox.ledger.ledger_rows(0, 10_000)}
        assert applied == expected, "the WMS ledger lacks a valid record or has a hostile one"
        exceptions = httpx.get(f"{api}/api/v1/exceptions", headers=headers).json()
        assert len(exceptions) >= bad_records - 1
        assert all(e["code"] and e["message"] for e in exceptions)
        assert agent.alive() and refused == 6
    finally:
        agent.stop()
