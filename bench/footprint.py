"""Footprint of ``possync run`` with every kind of source configured: start-up time, idle RSS and CPU.

Sources: file_drop CSV and POSLog folders, a journal tail, http_ingest, rest_poll against a stub POS
REST server in this process (Shopify orders shape, always an empty page), and serial_tap on a pty.
Start-up is spawn → ``GET /api/v1/status`` answering 200 (the product's readiness signal; the log's
"started" line comes just before the API thread listens). Idle is measured after the start-up work
(item master, first stock snapshot, first poll) has settled, over ``idle_s`` seconds, for the agent
process and any children, with psutil.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench.agent_proc import (
    IN_SYNC,
    AgentRun,
    csv_source,
    http_source,
    journal_source,
    poslog_source,
    rest_source,
    serial_source,
    spawn_agent,
)
from bench.common import ROOT, start_sandbox
from bench.latency import open_pty

WARM_UP_S = 5.0  # after the status API answers: first item-master pull, snapshot pull, first poll
POLL_EVERY = "30s"  # rest_poll interval in the footprint config
DIST = ROOT / "dist" / "possync"


@dataclass(frozen=True)
class Footprint:
    """One footprint run."""

    startup_s: float
    rss_mb: float
    cpu_pct: float
    polls: int


class _EmptyOrders(BaseHTTPRequestHandler):
    """Answers every GET with an empty Shopify orders page (no Link header: the last page)."""

    disable_nagle_algorithm = True
    polls = 0

    def do_GET(self) -> None:
        """Return ``{"orders": []}``."""
        type(self).polls += 1
        body = json.dumps({"orders": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""


def start_stub_pos() -> ThreadingHTTPServer:
    """Start the stub POS REST server on a free port of 127.0.0.1, in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyOrders)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def all_sources(folder: Path, pos_url: str, tty_path: str) -> list[str]:
    """Return every kind of source, with folders and files under ``folder``."""
    (folder / "journal").mkdir()
    (folder / "journal" / "journal.jsonl").touch()
    return [
        csv_source("./inbox"),
        poslog_source("./poslog"),
        journal_source("./journal/journal.jsonl"),
        http_source(),
        rest_source(f"{pos_url}/admin/api/2024-10/orders.json", POLL_EVERY),
        serial_source(tty_path),
    ]


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """Return the process and its children (recursively)."""
    return [proc, *proc.children(recursive=True)]


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    """Return user + system CPU seconds used so far by ``procs``."""
    return float(sum(p.cpu_times().user + p.cpu_times().system for p in procs))


def idle_usage(agent: AgentRun, idle_s: float) -> tuple[float, float]:
    """Return (RSS in MB at the end, CPU % of one core) of the agent's process tree over ``idle_s`` seconds."""
    proc = psutil.Process(agent.proc.pid)
    before, started = _cpu_seconds(_tree(proc)), time.monotonic()
    time.sleep(idle_s)
    agent.check_alive()
    tree = _tree(proc)
    cpu = (_cpu_seconds(tree) - before) / (time.monotonic() - started) * 100
    rss = sum(p.memory_info().rss for p in tree) / 1e6
    return rss, cpu


def run_once(idle_s: float) -> Footprint:
    """Start an agent with every source, time its start-up, then measure it idle."""
    master, slave, tty_path = open_pty()
    pos = start_stub_pos()
    _EmptyOrders.polls = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sandbox = start_sandbox(folder / "wms")
            pos_url = f"http://127.0.0.1:{pos.server_address[1]}"
            agent = spawn_agent(folder, sandbox.url, all_sources(folder, pos_url, tty_path))
            try:
                startup = agent.wait_ready()
                agent.wait_log(IN_SYNC)
                time.sleep(WARM_UP_S)
                rss, cpu = idle_usage(agent, idle_s)
            finally:
                agent.stop()
                sandbox.stop()
    finally:
        pos.shutdown()
        os.close(master)
        os.close(slave)
    return Footprint(startup, rss, cpu, _EmptyOrders.polls)


def build_executable() -> None:
    """Build the PyInstaller one-folder executable (``python -m installer build``)."""
    subprocess.run([sys.executable, "-m", "installer", "build"], cwd=ROOT, check=True)


def executable_size() -> str:
    """Return the size of the built executable, or how to build it."""
    if DIST.is_dir():
        files = [p for p in DIST.rglob("*") if p.is_file() and not p.is_symlink()]
        total = sum(p.stat().st_size for p in files)
        binary = (DIST / "possync").stat().st_size if (DIST / "possync").is_file() else 0
        return f"{total / 1e6:,.0f} MB one-folder dist/possync/ ({len(files):,} files; launcher {binary / 1e6:.0f} MB)"
    if DIST.is_file():
        return f"{DIST.stat().st_size / 1e6:,.0f} MB one-file dist/possync"
    return "not built (run .venv/bin/python -m installer build, or bench/run --build)"
