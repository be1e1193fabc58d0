"""Shared pieces of the benchmarks: generated movements, the sandbox WMS process, waiting and statistics."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.domain import Kind, Movement, make_event_id  # noqa: E402

STORE = "S001"
SKUS = [f"SKU-{n}" for n in (1001, 1002, 1003, 2001, 2002, 3001, 3002, 4001, 4002, 5001)]
WMS_TOKEN = "bench-wms-token-0123456789"
API_TOKEN = "bench-api-token-0123456789"
WHEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def movement(i: int, prefix: str) -> Movement:
    """Return sale line ``i`` of a generated export: 3 lines per POS transaction, a price, a SKU of the sample items."""
    txn, line = f"{prefix}-{i // 3:07d}", i % 3 + 1
    sku = SKUS[i % len(SKUS)]
    return Movement(
        event_id=make_event_id(STORE, txn, line, Kind.SALE),
        store_id=STORE,
        terminal_id="R1",
        pos_transaction_id=txn,
        line_no=line,
        business_day=date(2026, 11, 20),
        occurred_at=WHEN,
        kind=Kind.SALE,
        sku=sku,
        raw_item_id=sku,
        quantity=Decimal(1),
        unit="EA",
        original_quantity=Decimal(1),
        original_unit="EA",
        location=STORE,
        unit_price=Decimal("19.99"),
        source="bench",
        source_ref=f"bench.csv row {i + 2}",
    )


def movements(n: int, prefix: str) -> list[Movement]:
    """Return ``n`` fresh movements (fresh objects: none has its JSON cached yet)."""
    return [movement(i, prefix) for i in range(n)]


def median(values: Sequence[float]) -> float:
    """Return the median of the runs' figures."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: int) -> float:
    """Return the ``pct``-th percentile (inclusive method, as the other benchmarks use)."""
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[pct - 1])


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 60.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is truthy; raise ``RuntimeError`` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def progress(text: str) -> None:
    """Print a progress line on standard error (standard output carries only the table)."""
    print(text, file=sys.stderr, flush=True)


@dataclass
class Sandbox:
    """``possync sandbox`` running in its own process, with a fresh ledger."""

    proc: subprocess.Popen[str]
    url: str

    def stats(self) -> dict[str, Any]:
        """Return the sandbox's counters (``applied``, ``rejected``, ``pushes``, ...)."""
        response = httpx.get(f"{self.url}/_sandbox/stats", headers={"Authorization": f"Bearer {WMS_TOKEN}"})
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        """Terminate the sandbox and wait for it."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_sandbox(folder: Path) -> Sandbox:
    """Start ``possync sandbox --port 0`` on a fresh data folder; return once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sandbox", "--port", "0", "--data", str(folder), "--token", WMS_TOKEN],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return Sandbox(proc, match.group(1))
    proc.wait(timeout=10)
    raise RuntimeError("the sandbox WMS did not start")
