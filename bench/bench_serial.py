#!/usr/bin/env python3
"""serial_tap benchmarks: one command, one table. Run with the project's Python: ``python bench/bench_serial.py``.

Measures, on this machine:
- the decoder: receipts/s over the shared sample capture repeated, for decoding and splitting alone, with
  the generic-58mm template, and with line validation (everything the source does before storing);
- capture end to end: receipts/s from a pseudo-terminal into the outbox (spool, archive file fsynced,
  outbox commit with synchronous=FULL per receipt);
- passthrough latency: probes of 16 bytes of the sample written to the POS side of a pty pair, timed
  until they come out of the printer side, through the real source (capture running), against the
  same probes through one pty pair with nothing in between. The difference is what the tap adds.
Throughput figures are the median of ``--runs`` runs. Needs a POSIX system (pseudo-terminals).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import statistics
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.capture import OutboxSink  # noqa: E402
from agent.mapping import ItemMaster  # noqa: E402
from outbox.queue import Outbox  # noqa: E402
from pos_adapters.base import SourceContext  # noqa: E402
from pos_adapters.escpos import split_recording  # noqa: E402
from pos_adapters.receipt_templates import load_builtin  # noqa: E402
from pos_adapters.serial_tap import SerialTapSettings, SerialTapSource, read_receipt  # noqa: E402

SAMPLE = (ROOT / "tests" / "fixtures" / "serial_tap" / "sample-capture" / "input.escpos").read_bytes()
CTX = SourceContext("S001", ZoneInfo("America/Chicago"), ROOT, ROOT, "S001")


def pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def settings(**keys: object) -> SerialTapSettings:
    base = {"name": "receipt-tap", "kind": "serial_tap", "port": "-", "template": "generic-58mm", "idle_gap": "0.3s"}
    return SerialTapSettings.model_validate({**base, **keys})


def decoder_rates(copies: int, runs: int) -> list[tuple[str, str, str]]:
    stream = SAMPLE * copies
    template = load_builtin("generic-58mm")
    tap = settings()
    count = len(split_recording(stream))

    def split() -> None:
        split_recording(stream)

    def parse() -> None:
        for receipt in split_recording(stream):
            template.parse([line.text for line in receipt.lines])

    def full() -> None:
        for n, receipt in enumerate(split_recording(stream), 1):
            outcome = read_receipt(receipt, f"receipt-tap capture {n:06d}", template, tap, CTX)
            assert outcome.status == "parsed"

    rows = []
    setting = f"sample x{copies} ({count:,} receipts, {len(stream) / 1e6:.2f} MB)"
    for name, work in (
        ("decoder: decode + split into receipts", split),
        ("decoder + template generic-58mm", parse),
        ("decoder + template + line validation", full),
    ):
        seconds = statistics.median(_timed(work) for _ in range(runs))
        rows.append((name, setting, f"{count / seconds:,.0f} receipts/s ({len(stream) / seconds / 1e6:.1f} MB/s)"))
        setting = ""
    return rows


def _timed(work) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


class Running:
    """A serial_tap source on its own thread with a real outbox in a temporary folder."""

    def __init__(self, folder: Path, **keys: object) -> None:
        self.outbox = Outbox.open_file(folder / "outbox.sqlite")
        self.sink = OutboxSink("receipt-tap", self.outbox, ItemMaster(), lambda _n: None)
        ctx = SourceContext("S001", ZoneInfo("America/Chicago"), folder, folder, "S001")
        self.source = SerialTapSource(settings(**keys), ctx)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.source.run, args=(self.sink, self.stop_event), daemon=True)
        self.thread.start()
        _wait(lambda: self.source.health.state == "ok", "the tap in sync")

    def captured(self) -> int:
        return int((self.sink.cursor("capture") or {}).get("seq", 0))

    def stop(self) -> None:
        self.stop_event.set()
        self.source.wake()
        self.thread.join(timeout=15)
        self.outbox.close()


def _wait(predicate, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_serial: timed out waiting for {what}")
        time.sleep(0.005)


def capture_rate(copies: int, runs: int) -> tuple[str, str, str]:
    results = []
    for _ in range(runs):
        master, slave, path = pty()
        with tempfile.TemporaryDirectory() as folder:
            tap = Running(Path(folder), port=path)
            stream = SAMPLE * copies
            receipts = 12 * copies
            started = time.perf_counter()
            writer = threading.Thread(target=_write_all, args=(master, stream))
            writer.start()
            _wait(lambda tap=tap, receipts=receipts: tap.captured() >= receipts, "capture")
            results.append(receipts / (time.perf_counter() - started))
            writer.join()
            tap.stop()
        os.close(master)
        os.close(slave)
    setting = f"{12 * copies} receipts written at full speed, archive fsync + outbox commit per receipt"
    return ("capture into the outbox, end to end", setting, f"{statistics.median(results):,.0f} receipts/s")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _probe(write_fd: int, read_fd: int, chunk: bytes) -> float:
    started = time.perf_counter()
    _write_all(write_fd, chunk)
    got = 0
    while got < len(chunk):
        select.select([read_fd], [], [], 5.0)
        got += len(os.read(read_fd, 65536))
    return time.perf_counter() - started


def _probes(write_fd: int, read_fd: int, payloads: list[bytes]) -> list[float]:
    out = []
    for payload in payloads:
        out.append(_probe(write_fd, read_fd, payload))
        time.sleep(0.0005)
    return out


def _ms(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1] * 1000


def latencies(probes: int) -> list[tuple[str, str, str]]:
    chunks = [SAMPLE[i : i + 16] for i in range(0, len(SAMPLE), 16)]
    payloads = [chunks[n % len(chunks)] for n in range(probes)]
    # Baseline: the POS writes and the printer reads through one pty pair (a direct cable).
    master, slave, _ = pty()
    direct = _probes(master, slave, payloads)
    os.close(master)
    os.close(slave)
    pos_master, pos_slave, pos_path = pty()
    prn_master, prn_slave, prn_path = pty()
    with tempfile.TemporaryDirectory() as folder:
        tap = Running(Path(folder), port=pos_path, passthrough=prn_path)
        through = _probes(pos_master, prn_master, payloads)
        receipts = tap.captured()
        tap.stop()
    for fd in (pos_master, pos_slave, prn_master, prn_slave):
        os.close(fd)
    d50, d99, t50, t99 = _ms(direct, 50), _ms(direct, 99), _ms(through, 50), _ms(through, 99)
    probes_text = f"{probes:,} probes of 16 bytes of the sample"
    return [
        ("latency, direct pty (baseline)", probes_text, f"p50 {d50:.3f} ms, p99 {d99:.3f} ms"),
        ("latency, through the tap", f"same, {receipts} receipts captured", f"p50 {t50:.3f} ms, p99 {t99:.3f} ms"),
        ("passthrough added latency", "tap minus direct", f"p50 +{t50 - d50:.3f} ms, p99 +{t99 - d99:.3f} ms"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per throughput figure (median)")
    parser.add_argument("--copies", type=int, default=200, help="copies of the 12-receipt sample for the decoder")
    parser.add_argument("--probes", type=int, default=2000, help="latency probes")
    args = parser.parse_args()
    if not hasattr(os, "openpty"):
        print("bench_serial: needs pseudo-terminals (Linux or macOS)", file=sys.stderr)
        return 2
    logging.disable(logging.WARNING)
    rows = decoder_rates(args.copies, args.runs)
    rows.append(capture_rate(max(args.copies // 10, 5), args.runs))
    rows += latencies(args.probes)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    header = ("Benchmark", "Setting", "Result")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
