"""Helpers shared by the tests: waiting, configs, agent subprocesses, the sandbox, expectations."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent.demo import SAMPLE_EXPORT_MAPPING

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "agent" / "demo_data"
ITEMS_CSV = SAMPLES / "items.csv"
EXPORT_CSV = SAMPLES / "pos-export-sample.csv"

CSV_SOURCE = (
    """
[[sources]]
name = "pos-exports"
kind = "file_drop"
path = "./inbox"
pattern = "*.csv"
format = "csv"
settle = "{settle}"
rescan_every = "2s"
"""
    + SAMPLE_EXPORT_MAPPING
)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def write_config(
    folder: Path,
    wms_url: str,
    *,
    token_env: str = "POSSYNC_TEST_TOKEN",
    batch_size: int = 50,
    settle: str = "0.2s",
    extra_sync: str = "",
    sources: str | None = None,
) -> Path:
    """Write a possync.toml for store S001 with the CSV source of the sample export."""
    text = f"""
[agent]
store_id = "S001"
timezone = "America/Chicago"
data_dir = "./data"

[wms]
kind = "possync"
url = "{wms_url}"
token = "env:{token_env}"
batch_size = {batch_size}
timeout_s = 5
item_master_every = "1h"

[sync]
sla_s = 60
max_retry_delay = "2s"
{extra_sync}
{CSV_SOURCE.format(settle=settle) if sources is None else sources}
"""
    path = folder / "possync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def drop(inbox: Path, source: Path, name: str | None = None) -> Path:
    """Put a file into the inbox the way a careful POS does: write aside, then rename in."""
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / (name or source.name)
    staging = inbox / f".{target.name}.part"
    staging.write_bytes(source.read_bytes())
    staging.replace(target)
    return target


def expected_totals(export: Path = EXPORT_CSV, items: Path = ITEMS_CSV) -> dict[str, Decimal]:
    """Net stock change per SKU at S001 as the POS export says (read independently)."""
    from agent.demo import pos_totals

    return pos_totals(export, items)


def ledger_totals(ledger_rows: list[dict[str, Any]], location: str = "S001") -> dict[str, Decimal]:
    """Net stock change per SKU at a location according to the WMS ledger."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in ledger_rows:
        if row["stock_location"] == location:
            totals[row["sku"]] += Decimal(row["delta"])
    return {k: v for k, v in totals.items() if v != 0}


def export_line_count(export: Path = EXPORT_CSV) -> int:
    """Number of data rows in a CSV export."""
    with open(export, newline="", encoding="utf-8-sig") as handle:
        return sum(1 for _ in csv.DictReader(handle))


class AgentProcess:
    """``possync run`` as a real subprocess."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / "agent-stderr.log"

    def start(self) -> AgentProcess:
        handle = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
            cwd=self.config.parent,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``possync ARGS`` in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status_json(config: Path, env: dict[str, str]) -> dict[str, Any]:
    """``possync status --json`` for a config."""
    result = run_cli("status", "--json", "--config", str(config), env=env)
    assert result.stdout, result.stderr
    return dict(json.loads(result.stdout))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def enable_api(config: Path, port: int, token_env: str = "POSSYNC_API_TOKEN") -> str:
    """Turn on the local API in a config written by ``write_config``; return its base URL."""
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        'data_dir = "./data"', f'data_dir = "./data"\napi_port = {port}\napi_token = "env:{token_env}"', 1
    )
    config.write_text(text, encoding="utf-8")
    return f"http://127.0.0.1:{port}"
