#!/usr/bin/env python3
"""http_ingest benchmark: accepted transactions/s and the latency of a 202, with the real agent process.

The sandbox WMS and the agent (``possync run``) run as their own processes; POS clients post one
transaction (1-2 lines) per request from several threads over keep-alive connections. Run with the
project's Python: ``python bench/bench_ingest.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.helpers import enable_api, free_port, write_config  # noqa: E402

WMS_TOKEN = "bench-wms-token-0123456789"
API_TOKEN = "bench-api-token-0123456789"
SKUS = ["SKU-1001", "SKU-1002", "SKU-2001", "SKU-4001", "SKU-5001"]


def transaction(n: int) -> dict[str, object]:
    lines = [{"line_no": i + 1, "item": SKUS[(n + i) % len(SKUS)], "quantity": "1"} for i in range(1 + n % 2)]
    return {
        "transaction_id": f"B{n:07d}",
        "terminal_id": "R1",
        "occurred_at": "2026-11-20T10:00:00-06:00",
        "kind": "sale",
        "lines": lines,
    }


def run(count: int, threads: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wms = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "sandbox",
                "--port",
                "0",
                "--data",
                str(folder / "wms"),
                "--token",
                WMS_TOKEN,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert wms.stdout is not None
        url = next(m.group(1) for line in wms.stdout if (m := re.search(r"listening on (http://\S+)", line)))
        threading.Thread(target=wms.stdout.read, daemon=True).start()
        config = write_config(folder, url, sources='[[sources]]\nname = "push"\nkind = "http_ingest"\n', batch_size=500)
        api = enable_api(config, free_port())
        env = {**os.environ, "POSSYNC_TEST_TOKEN": WMS_TOKEN, "POSSYNC_API_TOKEN": API_TOKEN}
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            headers = {"Authorization": f"Bearer {API_TOKEN}"}
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(api + "/api/v1/status", headers=headers).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("agent did not start")
                time.sleep(0.1)
            local = threading.local()
            latencies: list[float] = []

            def post(n: int) -> None:
                if not hasattr(local, "http"):
                    local.http = httpx.Client(base_url=api, headers=headers, timeout=60)
                started = time.perf_counter()
                response = local.http.post("/api/v1/transactions", json=transaction(n))
                latencies.append(time.perf_counter() - started)
                if response.status_code != 202:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text}")

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(post, range(count)))
            elapsed = time.perf_counter() - started
            latencies.sort()
            return count / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000
        finally:
            agent.terminate()
            agent.wait(timeout=30)
            wms.terminate()
            wms.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [run(args.count, args.threads) for _ in range(args.runs)]
    rate = statistics.median(r[0] for r in results)
    p50 = statistics.median(r[1] for r in results)
    p99 = statistics.median(r[2] for r in results)
    print(f"| http_ingest, {args.threads} clients, {args.count:,} transactions | median of {args.runs} |")
    print("|---|---|")
    print(f"| accepted transactions/s | {rate:,.0f} |")
    print(f"| 202 latency p50 | {p50:.1f} ms |")
    print(f"| 202 latency p99 | {p99:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
