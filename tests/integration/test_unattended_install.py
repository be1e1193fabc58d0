"""`possync install` / `uninstall` as fleet tools run them: template, per-store values, credentials, upgrade."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from agent.cli import main
from installer.render import RenderError, render, set_key
from tests.support.helpers import (
    CSV_SOURCE,
    EXPORT_CSV,
    AgentProcess,
    drop,
    export_line_count,
    wait_for,
)
from tests.support.memory_keyring import MemoryKeyring
from wms_client.sandbox.server import SandboxServer

TEMPLATE = """# fleet template: one file for every store
[agent]
store_id = "${{POSSYNC_STORE_ID}}"   # filled per store
timezone = "America/Chicago"

[wms]
kind = "possync"
url = "{url}"
token = "keyring:possync/wms"
batch_size = 50
timeout_s = 5

[sync]
max_retry_delay = "1s"
""" + CSV_SOURCE.format(settle="0.2s")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("POSSYNC_STORE_ID", raising=False)
    return tmp_path


def template(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(TEMPLATE.format(url=url))
    return path


def outbox_rows(db: Path) -> list[tuple[str, str, int, str]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT event_id, status, attempts, payload FROM movement").fetchall())


def rows_if_ready(db: Path) -> list[tuple[str, str, int, str]]:
    """The outbox rows, or none while the agent is still creating the file's schema."""
    try:
        return outbox_rows(db) if db.exists() else []
    except sqlite3.OperationalError:
        return []


def test_render_keeps_comments_and_sets_keys() -> None:
    text = render(
        '[agent]\nstore_id = "${S}"  # the store\n[wms]\nurl = "x"\n', {"S": "S042"}, {"wms.batch_size": "20"}
    )
    assert 'store_id = "S042"  # the store' in text and "batch_size = 20" in text
    assert 'store_id = "S043"  # the store' in set_key(text, "agent.store_id", "S043")
    with pytest.raises(RenderError, match="POSSYNC_STORE_ID"):
        render('store_id = "${POSSYNC_STORE_ID}"', {}, {})
    with pytest.raises(RenderError, match=r"section\.key"):
        set_key(text, "sources.path", "x")


def test_install_with_keyring_stores_credentials_and_writes_the_store_config(
    home: Path,
    sandbox: SandboxServer,
    token: str,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POSSYNC_WMS_SECRET", token)
    monkeypatch.setenv("POSSYNC_STORE_ID", "S001")
    (home / "config" / "possync" / "inbox").mkdir(parents=True)
    assert main(["install", "--user", "--no-service", "--config", str(template(home, sandbox.url))]) == 0
    out = capsys.readouterr().out
    installed = home / "config" / "possync" / "possync.toml"
    text = installed.read_text()
    assert 'store_id = "S001"' in text and 'token = "keyring:possync/wms"' in text and token not in text
    assert f'data_dir = "{home / "share" / "possync"}"' in text
    assert MemoryKeyring.store[("possync", "wms")] == token
    assert "OK   wms:" in out and "OK   clock:" in out and "possync installed for store S001" in out
    assert stat.S_IMODE(installed.stat().st_mode) == 0o640


def test_install_fails_with_the_reason_and_nothing_started(
    home: Path,
    sandbox: SandboxServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet = template(home, sandbox.url)
    assert main(["install", "--user", "--no-service", "--config", str(fleet)]) == 1
    assert "POSSYNC_STORE_ID" in capsys.readouterr().err
    monkeypatch.setenv("POSSYNC_WMS_SECRET", "wrong-token")
    assert main(["install", "--user", "--no-service", "--config", str(fleet), "--store-id", "S001"]) == 1
    err = capsys.readouterr().err
    assert "doctor found" in err and "refused the credentials" in err
    assert (
        main(
            [
                "install",
                "--user",
                "--no-service",
                "--config",
                str(fleet),
                "--set",
                "wms.batch_size=9999",
                "--replace-config",
                "--store-id",
                "S001",
            ]
        )
        == 1
    )
    assert "wms.batch_size" in capsys.readouterr().err


def test_upgrade_keeps_the_outbox_and_config_and_uninstall_keeps_data_until_purge(
    home: Path, sandbox: SandboxServer, token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSSYNC_WMS_SECRET", token)
    dead = template(home, "http://127.0.0.1:9")
    args = ["install", "--user", "--no-service", "--secret-store", "file", "--store-id", "S001"]
    assert main([*args, "--config", str(dead), "--no-doctor"]) == 0
    installed = home / "config" / "possync" / "possync.toml"
    assert 'token = "file:' in installed.read_text()
    secret = home / "config" / "possync" / "wms.secret"
    assert secret.read_text().strip() == token and stat.S_IMODE(secret.stat().st_mode) == 0o600
    # The store captures a sale while the WMS is unreachable: it waits in the outbox.
    agent = AgentProcess(installed, {}).start()
    try:
        drop(home / "config" / "possync" / "inbox", EXPORT_CSV)
        outbox = home / "share" / "possync" / "outbox.sqlite"
        wait_for(lambda: len(rows_if_ready(outbox)) == export_line_count(), what="captured")
    finally:
        assert agent.stop() == 0
    before = outbox_rows(outbox)
    config_before = installed.read_text()
    # Upgrade with the same command: config and outbox untouched, the stored secret kept.
    monkeypatch.delenv("POSSYNC_WMS_SECRET")
    assert main([*args, "--config", str(dead), "--no-doctor"]) == 0
    assert "upgrade: keeping the installed config" in capsys.readouterr().out
    assert installed.read_text() == config_before and outbox_rows(outbox) == before
    # An upgrade that rewrites the config (new WMS address) still keeps the outbox, which is then delivered.
    assert main([*args, "--config", str(template(home, sandbox.url)), "--replace-config"]) == 0
    assert outbox_rows(outbox) == before
    agent = AgentProcess(installed, {}).start()
    try:
        wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), what="delivered after upgrade")
    finally:
        assert agent.stop() == 0
    assert main(["uninstall", "--user", "--no-service"]) == 0
    assert outbox.exists() and installed.exists()
    assert main(["uninstall", "--user", "--no-service", "--purge"]) == 0
    assert not outbox.exists() and not installed.exists() and not secret.exists()
