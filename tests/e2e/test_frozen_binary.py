"""The built executable, not Python: the service's exact command line, a sandbox WMS, a dropped file, delivered."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path, PurePosixPath

import httpx
import pytest

from installer import service
from tests.support.frozen import frozen_executable
from tests.support.helpers import EXPORT_CSV, drop, enable_api, export_line_count, free_port, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def binary() -> Path:
    executable, seconds = frozen_executable()
    if seconds is not None:
        print(f"\nbuilt {executable} in {seconds:.0f} s")
    return executable


def exec_start(binary: Path, config: Path) -> list[str]:
    """The ExecStart of the systemd unit `possync service install` would write for this binary."""
    target = service.Target("linux", "system", PurePosixPath(config), str(binary))
    unit = service.plan("install", target).files[0].content
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.fixture
def running(
    binary: Path, tmp_path: Path, sandbox: SandboxServer, token: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    config = write_config(tmp_path, sandbox.url)
    url = enable_api(config, free_port())
    env = {**os.environ, "POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": "api-token-for-test"}
    env.pop("PYTHONPATH", None)
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(exec_start(binary, config), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        yield proc, config, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_frozen_agent_started_as_the_unit_says_delivers_a_dropped_file(
    binary: Path, running: tuple[subprocess.Popen[bytes], Path, str], sandbox: SandboxServer, tmp_path: Path, token: str
) -> None:
    proc, config, url = running
    assert proc.args[0] == str(binary) and proc.args[1:3] == ["run", "--config"]
    wait_for(lambda: _up(url), timeout=30, what="frozen agent's API up")
    page = httpx.get(f"{url}/", timeout=5)
    assert page.status_code == 200 and "<html" in page.text.lower()  # the status page assets are bundled
    drop(tmp_path / "inbox", EXPORT_CSV)
    wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=60, what="delivered")
    env = {**os.environ, "POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": "api-token-for-test"}
    status = subprocess.run(
        [str(binary), "status", "--json", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    record = json.loads(status.stdout)
    assert record["acked"] == export_line_count() and record["version"] == version("possync")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "Traceback" not in (tmp_path / "agent.log").read_text()


def _up(url: str) -> bool:
    try:
        response = httpx.get(f"{url}/api/v1/status", headers={"Authorization": "Bearer api-token-for-test"}, timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def test_frozen_binary_version_doctor_and_cold_start(
    binary: Path, tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    started = time.monotonic()
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    cold = time.monotonic() - started
    assert result.stdout.strip() == f"possync {version('possync')}"
    print(f"\ncold start (--version): {cold:.2f} s")
    config = write_config(tmp_path, sandbox.url)
    (tmp_path / "inbox").mkdir()
    doctor = subprocess.run(
        [str(binary), "doctor", "--config", str(config)],
        env={**os.environ, "POSSYNC_TEST_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    backends = subprocess.run(
        [str(binary), "credentials", "check", "wms"],
        env={**os.environ, "POSSYNC_CONFIG": str(tmp_path / "none.toml")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # No keyring daemon here: the bundled keyring must still load and say what to do, not crash on imports.
    assert "Traceback" not in backends.stderr and backends.returncode == 1
