"""`possync doctor` against real servers, folders and ports: each failure names the problem and the fix."""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.doctor import Check, run_checks
from tests.support.helpers import run_cli, write_config
from wms_client.sandbox.server import SandboxServer


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def env(token: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", token)
    return {"POSSYNC_TEST_TOKEN": token}


def test_healthy_installation_passes_every_check(tmp_path: Path, sandbox: SandboxServer, env: dict[str, str]) -> None:
    config = write_config(tmp_path, sandbox.url)
    (tmp_path / "inbox").mkdir()
    result = run_cli("doctor", "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in ("config", "credentials wms", "folder data_dir", "folder pos-exports.path", "disk", "wms", "clock"):
        assert any(line.startswith("OK") and f" {name}:" in line for line in lines), (name, lines)
    assert lines[-1].endswith("all passed")
    assert env["POSSYNC_TEST_TOKEN"] not in result.stdout


def test_wrong_token_missing_secret_and_unreachable_wms(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, sandbox.url)
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", "not-the-token")
    wms = by_name(run_checks(config))["wms"]
    assert wms.status == "fail" and "refused the credentials (HTTP 401)" in wms.detail
    assert "possync credentials set wms" in wms.fix
    monkeypatch.delenv("POSSYNC_TEST_TOKEN")
    cred = by_name(run_checks(config))["credentials wms"]
    assert cred.status == "fail" and "POSSYNC_TEST_TOKEN is not set" in cred.detail
    assert cred.fix == "set POSSYNC_TEST_TOKEN in the service's environment"
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", env["POSSYNC_TEST_TOKEN"])
    (tmp_path / "down").mkdir()
    down = write_config(tmp_path / "down", "http://127.0.0.1:9")
    checks = by_name(run_checks(down, timeout=1))
    assert checks["wms"].status == "fail" and "not reachable" in checks["wms"].detail
    assert "firewall" in checks["wms"].fix
    assert checks["clock"].status == "warn"


def test_broken_config_is_one_failing_line_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "possync.toml"
    config.write_text('[agent]\nstore_id = "S 1"\n[wms]\nkind = "possync"\nurl = "http://x"\ntoken = "plain"\n')
    result = run_cli("doctor", "--config", str(config))
    assert result.returncode == 1
    line = result.stdout.splitlines()[0]
    assert line.startswith("FAIL config: 2 problem(s)") and f"{config}:2: agent.store_id" in line
    assert "secrets are never written in the config file" in line and "-> fix:" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folders_name_the_folder(tmp_path: Path, sandbox: SandboxServer, env: dict[str, str]) -> None:
    config = write_config(tmp_path, sandbox.url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    inbox.chmod(0o500)
    try:
        check = by_name(run_checks(config))["folder pos-exports.path"]
    finally:
        inbox.chmod(0o700)
    assert check.status == "fail" and str(inbox) in check.detail and "write access" in check.fix


def test_unwritable_folders_as_root_use_a_file_in_place_of_the_folder(
    tmp_path: Path, sandbox: SandboxServer, env: dict[str, str]
) -> None:
    config = write_config(tmp_path, sandbox.url)
    (tmp_path / "data").write_text("a file where the data folder should be")
    check = by_name(run_checks(config))["folder data_dir"]
    assert check.status == "fail" and "cannot be written" in check.detail and "writable" in check.fix


def test_missing_serial_port_and_low_disk(tmp_path: Path, sandbox: SandboxServer, env: dict[str, str]) -> None:
    sources = (
        '[[sources]]\nname = "tap"\nkind = "serial_tap"\ntemplate = "generic-58mm"\nport = "/dev/ttyPOSSYNC-none"\n'
    )
    config = write_config(tmp_path, sandbox.url, sources=sources, extra_sync="disk_min_free_mb = 100000000")
    checks = by_name(run_checks(config))
    serial = checks["serial tap.port"]
    assert serial.status == "fail" and "/dev/ttyPOSSYNC-none" in serial.detail and "cable" in serial.fix
    assert checks["disk"].status == "fail" and "below sync.disk_min_free_mb" in checks["disk"].detail


def test_a_pty_serial_port_opens(tmp_path: Path, sandbox: SandboxServer, env: dict[str, str]) -> None:
    controller, device = os.openpty()
    try:
        sources = f'[[sources]]\nname = "tap"\nkind = "serial_tap"\ntemplate = "generic-58mm"\nport = "{os.ttyname(device)}"\n'
        check = by_name(run_checks(write_config(tmp_path, sandbox.url, sources=sources)))["serial tap.port"]
    finally:
        os.close(controller)
        os.close(device)
    assert check.status == "ok"


class _SkewedWms(BaseHTTPRequestHandler):
    skew_s = -600.0

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew_s, usegmt=True)

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def skewed_wms() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SkewedWms)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_clock_skew_against_the_wms_date_header(tmp_path: Path, skewed_wms: str, env: dict[str, str]) -> None:
    checks = by_name(run_checks(write_config(tmp_path, skewed_wms)))
    assert checks["wms"].status == "ok"
    clock = checks["clock"]
    assert clock.status == "fail" and "s ahead of the WMS's" in clock.detail and "timedatectl set-ntp true" in clock.fix
    assert 590 <= float(clock.detail.split("clock is ")[1].split(" s")[0]) <= 610
