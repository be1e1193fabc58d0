"""A damaged outbox: detected at start-up, set aside untouched, salvaged, reported, and no crash loop."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from outbox.wal import wal_problem
from tests.e2e.test_file_drop_e2e import assert_ledger_is_the_export
from tests.support.helpers import (
    EXPORT_CSV,
    AgentProcess,
    drop,
    export_line_count,
    run_cli,
    status_json,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e


def captured_while_the_wms_is_away(
    tmp_path: Path, sandbox: SandboxServer, token: str, *, kill: bool
) -> tuple[Path, dict[str, str]]:
    """Capture the sample export with the WMS refusing, then stop the agent (cleanly or with SIGKILL)."""
    env = {"POSSYNC_TEST_TOKEN": token}
    config = write_config(tmp_path, sandbox.url)
    agent = AgentProcess(config, env).start()
    wait_for(
        lambda: (tmp_path / "data" / "outbox.sqlite").exists() and status_json(config, env).get("item_master_items")
    )
    sandbox.refuse(30)
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(lambda: (tmp_path / "inbox" / "done" / EXPORT_CSV.name).exists(), what="captured")
    if kill:
        agent.kill()
    else:
        agent.stop()
    return config, env


def restart_and_check(tmp_path: Path, config: Path, env: dict[str, str], sandbox: SandboxServer) -> dict[str, object]:
    agent = AgentProcess(config, env).start()
    try:
        damaged = wait_for(
            lambda: list((tmp_path / "data" / "damaged").glob("*/REASON.txt")), timeout=30, what="set aside"
        )
        assert len(damaged) == 1 and "Reason:" in damaged[0].read_text()
        listing = json.loads(run_cli("exceptions", "list", "--json", "--config", str(config), env=env).stdout)
        (note,) = [e for e in listing if e["code"] == "OUTBOX_DAMAGED"]
        assert note["category"] == "storage" and str(damaged[0].parent) in note["message"]
        status = wait_for(lambda: (s := status_json(config, env))["agent_running"] and s)
        assert status["state"] == "red"  # until a person has looked
        sandbox.refuse(0.1)
        return {"agent": agent, "note": note, "status": status}
    except BaseException:
        agent.stop()
        raise


def test_a_damaged_database_is_set_aside_salvaged_and_delivered(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    config, env = captured_while_the_wms_is_away(tmp_path, sandbox, token, kill=False)
    db = tmp_path / "data" / "outbox.sqlite"
    with sqlite3.connect(db) as conn:  # find an index page and scribble on it: the table itself stays readable
        page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ix_movement_sku'").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[(page - 1) * size : (page - 1) * size + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    result = restart_and_check(tmp_path, config, env, sandbox)
    agent = result["agent"]
    try:
        assert f"re-queued {export_line_count()} movement(s)" in str(result["note"]["message"])  # type: ignore[index]
        wait_for(
            lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
            timeout=60,
            what="salvaged movements delivered",
        )
        assert_ledger_is_the_export(sandbox)
        resolved = run_cli("exceptions", "resolve", str(result["note"]["id"]), "--config", str(config), env=env)  # type: ignore[index]
        assert resolved.returncode == 0
        assert wait_for(lambda: (s := status_json(config, env))["exceptions_open"] == 0 and s)["state"] == "green"
    finally:
        agent.stop()  # type: ignore[attr-defined]
    # No crash loop: the next start is ordinary and sets nothing else aside.
    again = AgentProcess(config, env).start()
    try:
        wait_for(lambda: status_json(config, env)["agent_running"], what="restarted")
        assert len(list((tmp_path / "data" / "damaged").iterdir())) == 1
    finally:
        again.stop()


def test_a_truncated_database_still_starts_and_says_what_was_lost(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    config, env = captured_while_the_wms_is_away(tmp_path, sandbox, token, kill=False)
    db = tmp_path / "data" / "outbox.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    result = restart_and_check(tmp_path, config, env, sandbox)
    try:
        message = str(result["note"]["message"])  # type: ignore[index]
        assert "set aside" in message and ("could not be read" in message or "Nothing was unreadable" in message)
    finally:
        result["agent"].stop()  # type: ignore[attr-defined]


def test_a_damaged_wal_is_detected_instead_of_silently_ignored(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    config, env = captured_while_the_wms_is_away(tmp_path, sandbox, token, kill=True)  # the WAL holds the capture
    wal = tmp_path / "data" / "outbox.sqlite-wal"
    data = bytearray(wal.read_bytes())
    assert len(data) > 32 + 2 * 4120, "the capture should still be in the WAL"
    data[32 + 24 + 200] ^= 0xFF  # inside the first frame's page
    wal.write_bytes(bytes(data))
    assert wal_problem(tmp_path / "data" / "outbox.sqlite") is not None
    result = restart_and_check(tmp_path, config, env, sandbox)
    try:
        assert "WAL" in str(result["note"]["message"]) or "-wal" in str(result["note"]["message"])  # type: ignore[index]
        folder = next((tmp_path / "data" / "damaged").iterdir())
        assert (folder / "outbox.sqlite-wal").read_bytes() == bytes(data)  # kept exactly as found
    finally:
        result["agent"].stop()  # type: ignore[attr-defined]
