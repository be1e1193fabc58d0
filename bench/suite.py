"""``bench/run``: every headline benchmark in one table, possync beside its limit or peer, measured in the same run.

Each figure is the median of ``--runs`` runs; within a run, possync and its comparison run one after
the other on the same data sizes, so the ratio compares like with like on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sqlite3
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from bench import drain, footprint, latency, outbox_ingest
from bench.common import median, percentile, progress
from bench.report import Row, met, percent, rate, render, seconds

AREAS = ("ingest", "drain", "latency", "footprint")
COMMIT_SIZES = ((3, "3 per commit (one POS transaction)"), (2000, "2,000 per commit (one file chunk)"))
BATCHES = ((200, "batch 200 (default)"), (500, "batch 500 (protocol maximum)"))
LATENCY_TARGETS = (0.5, 1.5)  # p50, p99 seconds
RSS_TARGET_MB, CPU_TARGET_PCT = 60.0, 1.0
INGEST_TARGET, DRAIN_TARGET, DRAIN_100K_S = 0.5, 0.7, 30.0


@dataclass(frozen=True)
class Options:
    """What to run and how big."""

    runs: int
    enqueue: int
    backlog: int
    transactions: int
    rate: float
    idle_s: float
    areas: tuple[str, ...]
    build: bool


def parse(argv: list[str] | None) -> Options:
    """Parse the command line; ``--quick`` shrinks every size that was not given explicitly."""
    p = argparse.ArgumentParser(prog="bench/run", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fast smoke run: 1 run, small sizes")
    p.add_argument("--runs", type=int, help="runs per figure, median reported (default 3; --quick 1)")
    p.add_argument("--enqueue", type=int, help="movements per ingest run (default 100,000; --quick 10,000)")
    p.add_argument("--backlog", type=int, help="movements in the drain backlog (default 100,000; --quick 20,000)")
    p.add_argument("--transactions", type=int, help="transactions per latency path (default 1,000; --quick 200)")
    p.add_argument("--rate", type=float, default=10.0, help="store rate for latency, transactions/s (default 10)")
    p.add_argument("--idle", type=float, help="seconds of idle measurement (default 60; --quick 15)")
    p.add_argument("--only", default=",".join(AREAS), help=f"comma-separated subset of {','.join(AREAS)}")
    p.add_argument(
        "--build", action="store_true", help="build the PyInstaller executable first (python -m installer build)"
    )
    a = p.parse_args(argv)
    areas = tuple(x.strip() for x in a.only.split(",") if x.strip())
    unknown = set(areas) - set(AREAS)
    if unknown:
        p.error(f"--only: unknown area(s) {', '.join(sorted(unknown))}")

    def pick(value: int | float | None, full: float, quick: float) -> float:
        return float(value) if value is not None else (quick if a.quick else full)

    return Options(
        runs=int(pick(a.runs, 3, 1)),
        enqueue=int(pick(a.enqueue, 100_000, 10_000)),
        backlog=int(pick(a.backlog, 100_000, 20_000)),
        transactions=int(pick(a.transactions, 1000, 200)),
        rate=a.rate,
        idle_s=pick(a.idle, 60, 15),
        areas=areas,
        build=a.build,
    )


def side_by_side(runs: int, label: str, fns: Mapping[str, Callable[[], float]]) -> dict[str, float]:
    """Run every function once per run, in turn; return the median of each."""
    values: dict[str, list[float]] = {name: [] for name in fns}
    for run in range(runs):
        for name, fn in fns.items():
            values[name].append(fn())
            progress(f"    {label} run {run + 1}/{runs}: {name} {values[name][-1]:,.0f}/s")
    return {name: median(v) for name, v in values.items()}


def ingest_rows(o: Options) -> list[Row]:
    """Outbox ingest beside raw sqlite3 (the limit) and persist-queue (a peer)."""
    rows = []
    for per_commit, setting in COMMIT_SIZES:
        n = o.enqueue if per_commit > 3 else max(o.enqueue // 10, 300)
        fns = {
            "possync": partial(outbox_ingest.possync_rate, n, per_commit),
            "raw": partial(outbox_ingest.raw_rate, n, per_commit),
            "persist-queue": partial(outbox_ingest.persist_queue_rate, n, per_commit),
        }
        r = side_by_side(o.runs, f"ingest {per_commit}/commit", fns)
        vs_raw = r["possync"] / r["raw"]
        name = "outbox ingest, synchronous=FULL"
        rows.append(
            Row(
                name,
                f"{setting}; {n:,} movements",
                rate(r["possync"]),
                f"raw sqlite3 {rate(r['raw'])}",
                percent(vs_raw),
                "≥ 50% of raw",
                met(vs_raw >= INGEST_TARGET),
            )
        )
        rows.append(
            Row(
                name,
                f"{setting}; peer [1]",
                rate(r["possync"]),
                f"persist-queue {rate(r['persist-queue'])}",
                percent(r["possync"] / r["persist-queue"]),
                "peer",
            )
        )
    return rows


def drain_rows(o: Options) -> list[Row]:
    """Backlog drain beside a bare httpx loop (the limit)."""
    rows = []
    for batch, setting in BATCHES:
        fns = {
            "possync": partial(drain.possync_rate, o.backlog, batch),
            "bare httpx": partial(drain.bare_rate, o.backlog, batch),
        }
        r = side_by_side(o.runs, f"drain batch {batch}", fns)
        ratio, projected = r["possync"] / r["bare httpx"], 100_000 / r["possync"]
        ok = ratio >= DRAIN_TARGET and projected < DRAIN_100K_S
        why = ", ".join(w for w, bad in (("ratio", ratio < DRAIN_TARGET), ("time", projected >= DRAIN_100K_S)) if bad)
        rows.append(
            Row(
                f"backlog drain of {o.backlog:,} to the sandbox WMS",
                setting,
                f"{rate(r['possync'])} (100,000 in {projected:.1f} s)",
                f"bare httpx {rate(r['bare httpx'])}",
                percent(ratio),
                "≥ 70% of bare; 100,000 in < 30 s",
                met(ok, why),
            )
        )
    return rows


def latency_rows(o: Options) -> list[Row]:
    """End-to-end latency of each POS path: median over runs of each run's p50 and p99."""
    p50s: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    for run in range(o.runs):
        progress(f"    latency run {run + 1}/{o.runs}")
        for path, values in latency.run_once(o.transactions, o.rate).items():
            p50s.setdefault(path, []).append(percentile(values, 50))
            p99s.setdefault(path, []).append(percentile(values, 99))
            progress(f"      {path}: p50 {seconds(p50s[path][-1])}, p99 {seconds(p99s[path][-1])}")
    rows = []
    for path in p50s:
        p50, p99 = median(p50s[path]), median(p99s[path])
        why = ", ".join(w for w, bad in (("p50", p50 >= LATENCY_TARGETS[0]), ("p99", p99 >= LATENCY_TARGETS[1])) if bad)
        rows.append(
            Row(
                f"end-to-end latency: {path}",
                f"{o.transactions:,} transactions at {o.rate:g}/s",
                f"p50 {seconds(p50)}, p99 {seconds(p99)}",
                target="p50 < 0.5 s, p99 < 1.5 s",
                met=met(not why, why),
            )
        )
    return rows


def footprint_rows(o: Options) -> list[Row]:
    """Start-up, idle RSS and CPU of ``possync run`` with every source; the executable's size."""
    if o.build:
        progress("    building the executable (python -m installer build)")
        footprint.build_executable()
    runs = []
    for run in range(o.runs):
        runs.append(footprint.run_once(o.idle_s))
        f = runs[-1]
        figures = f"start-up {f.startup_s:.2f} s, {f.rss_mb:.0f} MB, {f.cpu_pct:.2f}% CPU, {f.polls} POS poll(s)"
        progress(f"    footprint run {run + 1}/{o.runs}: {figures}")
    rss, cpu = median([f.rss_mb for f in runs]), median([f.cpu_pct for f in runs])
    startup = median([f.startup_s for f in runs])
    idle = f"idle {o.idle_s:g} s, all 6 sources [3]"
    return [
        Row("footprint: RSS (agent + children)", idle, f"{rss:.0f} MB", target="< 60 MB", met=met(rss < RSS_TARGET_MB)),
        Row("footprint: CPU (% of one core)", idle, f"{cpu:.2f}%", target="< 1%", met=met(cpu < CPU_TARGET_PCT)),
        Row("footprint: start-up", "spawn → GET /api/v1/status 200", seconds(startup)),
        Row("footprint: executable size", "PyInstaller build in dist/", footprint.executable_size()),
    ]


def machine() -> str:
    """Describe this machine in one line."""
    distro = platform.platform()
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            fields = dict(line.rstrip("\n").split("=", 1) for line in release if "=" in line)
        distro = fields.get("PRETTY_NAME", distro).strip('"')
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores (nproc), {distro}, kernel {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def notes(o: Options) -> list[str]:
    """Return the footnotes of the table."""
    return [
        "persist-queue SQLiteAckQueue(auto_commit=True), one put per movement, PRAGMA synchronous=FULL set on its "
        "connection: it refuses auto_commit=False (warns, forces True), so each put is its own durable commit, "
        "the only setting durable at every commit boundary; items are the Movement objects (its default pickle).",
        "Latency: one agent process with file_drop, http_ingest and serial_tap, each path in turn; "
        "file_drop with its defaults (settle 1 s, settle_after_close 0.15 s). "
        "File drop 'renamed in': written as .NAME.part in the folder, closed, renamed (done = rename returned); "
        "'written in place': done = file closed. HTTP: done = 202 received. Serial: done = last byte written "
        "to the pty master (10 receipts/s is far beyond a 9600-baud line; the pty has no line speed).",
        f"file_drop CSV + POSLog, journal, http_ingest, rest_poll (stub POS, every {footprint.POLL_EVERY}), serial_tap "
        f"on a pty; measured after a {footprint.WARM_UP_S:g} s warm-up following the first status answer.",
        f"Median of {o.runs} run(s) per figure; ratios from the same runs. Machine: {machine()}.",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen areas and print the table on standard output."""
    o = parse(argv)
    logging.disable(logging.WARNING)
    progress(f"possync bench: {', '.join(o.areas)}; {o.runs} run(s) per figure; {machine()}")
    rows: list[Row] = []
    steps: dict[str, Callable[[], list[Row]]] = {
        "ingest": lambda: ingest_rows(o),
        "drain": lambda: drain_rows(o),
        "latency": lambda: latency_rows(o),
        "footprint": lambda: footprint_rows(o),
    }
    for area in o.areas:
        progress(f"  {area}")
        rows += steps[area]()
    print(render(rows, notes(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
