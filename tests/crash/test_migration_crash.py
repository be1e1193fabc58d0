"""SIGKILL during a schema upgrade: an outbox written by an older possync keeps every movement."""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from outbox.migrations import CURRENT_VERSION
from tests.support.backlog import build_backlog
from tests.support.helpers import AgentProcess, status_json, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")]
ROWS = 150_000
UPGRADING = "upgrading the outbox"


def schema_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:  # recovers the WAL exactly as the next start would
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_sigkill_during_schema_upgrade_loses_nothing(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    outbox = tmp_path / "data" / "outbox.sqlite"
    outbox.parent.mkdir()
    build_backlog(outbox, ROWS, schema_version=1)
    config = write_config(tmp_path, sandbox.url, batch_size=500)
    env = {"POSSYNC_TEST_TOKEN": token}
    rng = random.Random(3)
    landed = 0
    for _ in range(4):
        agent = AgentProcess(config, env).start()
        seen_before = agent.output().count(UPGRADING)
        wait_for(
            lambda a=agent, n=seen_before: a.output().count(UPGRADING) > n or not a.alive(),  # type: ignore[misc]
            timeout=60,
            interval=0.002,
            what="the upgrade to begin",
        )
        assert agent.alive(), agent.output()[-2000:]
        time.sleep(rng.uniform(0, 0.04))  # somewhere inside the upgrade (it takes ~0.1 s at this size)
        agent.kill()
        if schema_version(outbox) == 1:
            landed += 1
    assert landed >= 3, f"only {landed} of 4 kills landed inside the upgrade; the test proves too little"
    assert sandbox.ledger.stats()["applied"] == 0

    agent = AgentProcess(config, env).start()
    wait_for(lambda: sandbox.ledger.stats()["applied"] >= ROWS, timeout=240, interval=0.5, what="the backlog delivered")
    rows = sandbox.ledger.ledger_rows(0, ROWS + 10)
    assert len(rows) == ROWS
    assert {r["event_id"] for r in rows} == {f"BL-{n:09d}" for n in range(ROWS)}
    assert schema_version(outbox) == CURRENT_VERSION
    status = wait_for(lambda: (s := status_json(config, env))["pending"] == 0 and s, what="nothing pending")
    assert status["exceptions_open"] == 0
    assert agent.stop() == 0
