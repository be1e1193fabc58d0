"""Resource faults: a full disk, a read-only data folder, a locked outbox, wall-clock jumps, a huge backlog."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.config import load_config
from agent.runtime import Agent
from tests.e2e.test_file_drop_e2e import assert_ledger_is_the_export
from tests.support.backlog import build_backlog
from tests.support.helpers import (
    EXPORT_CSV,
    AgentProcess,
    drop,
    enable_api,
    export_line_count,
    free_port,
    run_cli,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
API_TOKEN = "resource-faults-api-token"


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small filesystem needs root (CI runs as root)"
    probe = Path("/tmp/possync-mount-probe")
    probe.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True, check=False
    )
    if done.returncode != 0:
        return f"this machine does not allow mounting a tmpfs ({done.stderr.decode().strip()})"
    subprocess.run(["umount", str(probe)], check=False)
    return None


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def api_status(url: str) -> dict[str, object]:
    try:
        response = httpx.get(url + "/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    except httpx.HTTPError:
        return {}
    return dict(response.json()) if response.status_code == 200 else {}


def agent_with_api(
    tmp_path: Path, sandbox: SandboxServer, token: str, extra_sync: str = ""
) -> tuple[AgentProcess, str]:
    config = write_config(tmp_path, sandbox.url, extra_sync=extra_sync)
    url = enable_api(config, free_port())
    agent = AgentProcess(config, {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN}).start()
    wait_for(lambda: api_status(url).get("item_master_items"), what="agent up")
    return agent, url


def test_disk_full_keeps_the_file_says_why_and_resumes(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    with small_disk(tmp_path / "data", "8m") as data:
        agent, url = agent_with_api(tmp_path, sandbox, token, extra_sync="disk_min_free_mb = 1")
        try:
            filler = fill(data)
            drop(tmp_path / "inbox", EXPORT_CSV)
            status = wait_for(
                lambda: (s := api_status(url)) and "could not store" in " ".join(s["reasons"]) and s,  # type: ignore[arg-type]
                timeout=30,
                what="the capture failure shown",
            )
            assert status["state"] == "red" and "disk nearly full" in " ".join(status["reasons"])  # type: ignore[arg-type]
            assert (tmp_path / "inbox" / EXPORT_CSV.name).exists(), "the file must stay where it is"
            assert sandbox.ledger.stats()["applied"] == 0
            filler.unlink()  # space comes back
            wait_for(
                lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
                timeout=60,
                what="captured and delivered",
            )
            assert (tmp_path / "inbox" / "done" / EXPORT_CSV.name).exists()
            assert_ledger_is_the_export(sandbox)
            assert agent.alive()
        finally:
            agent.stop()


def test_a_read_only_data_folder_is_named_at_start(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    # Linux refuses to make a filesystem read-only while files on it are open for writing, so the
    # case a store can meet is a data folder that is read-only when the agent starts.
    with small_disk(tmp_path / "data", "16m") as data:
        agent, _ = agent_with_api(tmp_path, sandbox, token)
        agent.stop()
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        result = run_cli(
            "run",
            "--config",
            str(tmp_path / "possync.toml"),
            env={"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN},
            timeout=30,
        )
        assert result.returncode == 1 and "cannot be written" in result.stderr and "Traceback" not in result.stderr
        subprocess.run(["mount", "-o", "remount,rw", str(data)], check=True)


def test_the_outbox_locked_by_another_process_delays_but_loses_nothing(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    agent, url = agent_with_api(tmp_path, sandbox, token)
    outbox = tmp_path / "data" / "outbox.sqlite"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(outbox)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(8); c.execute('COMMIT')",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        drop(tmp_path / "inbox", EXPORT_CSV)
        time.sleep(2)
        assert (tmp_path / "inbox" / EXPORT_CSV.name).exists() and sandbox.ledger.stats()["applied"] == 0
        assert api_status(url).get("agent_running") is True  # still answering while the file is locked
        holder.wait(timeout=30)
        wait_for(
            lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
            timeout=60,
            what="delivered after the lock",
        )
        assert_ledger_is_the_export(sandbox)
    finally:
        holder.kill()
        agent.stop()


class JumpingClock:
    """A wall clock that can be moved by hours, like an NTP correction or a dead CMOS battery."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_wall_clock_jumps_neither_stall_nor_storm_retries(
    tmp_path: Path, sandbox: SandboxServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", token)
    admin = {"Authorization": f"Bearer {token}"}
    clock = JumpingClock()
    agent = Agent(load_config(write_config(tmp_path, sandbox.url)), clock=clock)
    agent.start()

    def pushes_in(seconds: float) -> int:
        before = httpx.get(f"{sandbox.url}/_sandbox/stats", headers=admin).json()["pushes"]
        time.sleep(seconds)
        return int(httpx.get(f"{sandbox.url}/_sandbox/stats", headers=admin).json()["pushes"]) - before

    try:
        httpx.post(f"{sandbox.url}/_sandbox/faults", json={"error_rate": 1.0}, headers=admin)
        drop(tmp_path / "inbox", EXPORT_CSV)
        wait_for(lambda: agent.outbox.counts().pending == export_line_count(), what="captured")
        time.sleep(3)  # backoff reaches its cap (max_retry_delay = 2 s in the test config)
        baseline = pushes_in(5)
        # The policy allows at most one push per cap/10 (full jitter with a floor): 25 in 5 s; a storm is hundreds.
        assert 1 <= baseline <= 25
        for jump in (-3 * 3600, +6 * 3600, -3 * 3600):
            clock.offset += jump
            count = pushes_in(5)
            assert count >= 1, f"after a {jump / 3600:+.0f} h jump delivery stalled"
            assert count <= max(3 * baseline, 6), (
                f"after a {jump / 3600:+.0f} h jump: {count} pushes in 5 s vs {baseline} before"
            )
        httpx.post(f"{sandbox.url}/_sandbox/faults", json={"error_rate": 0}, headers=admin)
        wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=30, what="delivered")
        assert_ledger_is_the_export(sandbox)
    finally:
        agent.stop()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_million_movement_backlog_keeps_the_agent_responsive_and_memory_flat(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    build_backlog(tmp_path / "data" / "outbox.sqlite", 1_000_000, age_s=3 * 86400)  # three days offline
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"latency_ms": 100}, headers={"Authorization": f"Bearer {token}"})
    config = write_config(tmp_path, sandbox.url, batch_size=500)
    url = enable_api(config, free_port())
    agent = AgentProcess(config, {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN}).start()
    try:
        first = wait_for(lambda: api_status(url), timeout=60, what="agent up on a 1,000,000 backlog")
        assert first["pending"] + sandbox.ledger.stats()["applied"] >= 1_000_000 - 1_000  # type: ignore[operator]
        samples: list[float] = []
        answers: list[float] = []
        for _ in range(15):
            started = time.monotonic()
            status = api_status(url)
            answers.append(time.monotonic() - started)
            assert status.get("agent_running") is True, "the status must keep answering"
            samples.append(_rss_mb(agent.proc.pid))  # type: ignore[union-attr]
            time.sleep(1)
        delivered = sandbox.ledger.stats()["applied"]
        assert delivered > 5_000, "the backlog should be draining"
        steady = samples[3:]
        assert max(steady) - min(steady) < 25, f"memory grew while draining: {samples}"
        assert max(answers) < 5, f"status answers took {max(answers):.1f} s at worst"
        status = api_status(url)
        assert status["state"] == "amber" and any(
            "oldest unsent movement is 3.0 days old" in r for r in status["reasons"]
        )  # type: ignore[union-attr]
    finally:
        agent.stop()
    run = run_cli("status", "--json", "--config", str(config), env={"POSSYNC_TEST_TOKEN": token})
    assert run.returncode == 3  # the CLI still reads a 700 MB outbox of a stopped agent
