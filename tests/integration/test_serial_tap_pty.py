"""The serial_tap source on real pseudo-terminal pairs, with a real outbox file and the real capture sink.

The test holds each pair's master end (the POS, or the printer); the source opens the slave end by
path, exactly as it opens /dev/ttyUSB0. Receipts are made by python-escpos.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.capture import OutboxSink
from agent.domain import Movement
from agent.mapping import ItemMaster
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from pos_adapters import serial_tap
from pos_adapters.base import SourceContext
from pos_adapters.escpos import split_recording
from pos_adapters.receipt_templates import builtin_text
from pos_adapters.serial_spool import SpoolWriter, segment_numbers
from pos_adapters.serial_tap import SerialTapSettings, SerialTapSource
from tests.support.helpers import wait_for
from tests.support.serial_tap import SAMPLE_CAPTURE, PtyPair, Sale, golden_mixed_stream, mixed_sales, receipt_bytes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need a POSIX system")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "serial_tap"
SAMPLE = SAMPLE_CAPTURE.read_bytes()
SAMPLE_IDS = [
    json.loads(line)["movement"]["event_id"]
    for line in (FIXTURES / "sample-capture" / "expected.jsonl").read_text().splitlines()
]


class Tap:
    """A serial_tap source running on its own thread, as the agent runs it."""

    def __init__(self, data: Path, **keys: Any) -> None:
        self.data = data
        self.settings = SerialTapSettings.model_validate(
            {
                "name": "receipt-tap",
                "kind": "serial_tap",
                "template": "generic-58mm",
                "idle_gap": "0.3s",
                "reconnect_every": "0.2s",
                **keys,
            }
        )
        self.ctx = SourceContext("S001", ZoneInfo("America/Chicago"), data, data, "S001")
        data.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox.open_file(data / "outbox.sqlite")
        self.sink = OutboxSink("receipt-tap", self.outbox, ItemMaster(), lambda _n: None)
        self.source = SerialTapSource(self.settings, self.ctx)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.source.run, args=(self.sink, self.stop_event), daemon=True)

    def start(self) -> Tap:
        self.thread.start()
        return self

    def ready(self) -> None:
        wait_for(lambda: self.source.health.state == "ok", what=f"tap in sync ({self.source.health})")

    def movements(self) -> list[Movement]:
        return self.outbox.held()  # the item master is empty: every captured movement is held

    def cursor(self) -> dict[str, Any]:
        return self.sink.cursor("capture") or {}

    def wait_captured(self, count: int, timeout: float = 20) -> None:
        wait_for(lambda: self.cursor().get("seq", 0) >= count, timeout=timeout, what=f"{count} receipts captured")

    def stop(self) -> None:
        self.stop_event.set()
        self.source.wake()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()
        self.outbox.close()


@pytest.fixture
def pairs() -> Iterator[list[PtyPair]]:
    made: list[PtyPair] = []
    yield made
    for pair in made:
        pair.close()


@pytest.fixture
def taps() -> Iterator[list[Tap]]:
    made: list[Tap] = []
    yield made
    for tap in made:
        if tap.thread.is_alive():
            tap.stop()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serial_tap, "RETRY_S", 0.2)
    monkeypatch.setattr(serial_tap, "TEMPLATE_CHECK_S", 0.2)


def archived(data: Path, seq: int) -> bytes:
    (path,) = data.glob(f"receipts/receipt-tap/*/{seq:06d}.escpos.gz")
    return gzip.decompress(path.read_bytes())


def test_passthrough_is_byte_identical_and_every_receipt_is_captured_once(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    pos, printer = PtyPair(), PtyPair()
    pairs += [pos, printer]
    printer.start_reading()
    tap = Tap(tmp_path / "data", port=pos.path, passthrough=printer.path).start()
    taps.append(tap)
    tap.ready()
    sales = mixed_sales(4)
    stream = SAMPLE + b"".join(data for _, data in sales)
    pos.write(stream, random.Random(1), pause=0.0005)
    tap.wait_captured(16)
    wait_for(lambda: len(printer.received()) >= len(stream), what="printer side received everything")
    assert printer.received() == stream, "passthrough altered the bytes"

    ids = [m.event_id for m in tap.movements()]
    expected = set(SAMPLE_IDS).union(*(sale.event_ids() for sale, _ in sales))
    assert len(ids) == len(set(ids)) and set(ids) == expected
    # every receipt's raw bytes are archived, and its movements say which archive file
    assert [archived(tap.data, n) for n in range(1, 13)] == [r.raw for r in split_recording(SAMPLE)]
    assert [archived(tap.data, n) for n in range(13, 17)] == [data for _, data in sales]
    first_of_13 = next(m for m in tap.movements() if m.pos_transaction_id == sales[0][0].txn)
    assert first_of_13.source_ref.startswith("receipt-tap capture 000013 line ")
    linked = first_of_13.source_ref.rsplit("(", 1)[1].rstrip(")")  # the archive file, from the data folder
    assert gzip.decompress((tap.data / linked).read_bytes()) == sales[0][1]

    # the printer's replies (status, flow control) reach the POS unchanged
    pos.write(b"\x10\x04\x01")
    wait_for(lambda: printer.received().endswith(b"\x10\x04\x01"), what="status query forwarded")
    os.write(printer.master, b"\x12\x13\x11")
    assert pos.read_available(timeout=2) == b"\x12\x13\x11"


def test_printing_does_not_wait_for_a_broken_template_and_nothing_is_lost(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap], fast_retries: None
) -> None:
    pos, printer = PtyPair(), PtyPair()
    pairs += [pos, printer]
    printer.start_reading()
    template = tmp_path / "data" / "my-pos.toml"
    tap = Tap(tmp_path / "data", port=pos.path, passthrough=printer.path, template=None, template_file="my-pos.toml")
    tap.start()
    taps.append(tap)
    wait_for(lambda: tap.source.link is not None and tap.source.link.pos is not None, what="port open")
    wait_for(lambda: "cannot be read" in (tap.source.health.last_error or ""), what="template problem shown")
    time.sleep(0.5)  # let the line be quiet so the first receipt counts
    pos.write(SAMPLE, random.Random(2))
    wait_for(lambda: printer.received() == SAMPLE, what="printing went on without a template")
    assert tap.cursor() == {} and tap.movements() == []
    template.write_text("name = 'broken'\ntransaction = '(unclosed'\n")
    wait_for(lambda: "not a valid regular expression" in (tap.source.health.last_error or ""), what="bad template")
    template.write_text(builtin_text("generic-58mm"))
    tap.wait_captured(12)
    assert sorted(m.event_id for m in tap.movements()) == sorted(SAMPLE_IDS)
    wait_for(lambda: tap.source.health.state == "ok", what="healthy again")


def test_a_receipt_already_under_way_at_start_up_is_discarded_not_half_read(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    pos = PtyPair()
    pairs.append(pos)
    first, second, third = (receipt_bytes(Sale(f"R3-00010{n}", [("SKU-1001", n + 1, False)])) for n in range(3))
    tap = Tap(tmp_path / "data", port=pos.path, idle_gap="3s").start()
    taps.append(tap)
    wait_for(lambda: tap.source.link is not None and tap.source.link.pos is not None, interval=0.005, what="port open")
    pos.write(first[len(first) // 2 :] + second + third)  # the line was busy when the agent started listening
    tap.wait_captured(2)
    assert {m.pos_transaction_id for m in tap.movements()} == {"R3-000101", "R3-000102"}
    (fragment,) = tap.data.glob("receipts/receipt-tap/*/partial-*.escpos.gz")
    assert gzip.decompress(fragment.read_bytes()) == first[len(first) // 2 :]
    assert archived(tap.data, 1) == second


def test_an_idle_gap_ends_receipts_that_have_no_cut(tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]) -> None:
    pos = PtyPair()
    pairs.append(pos)
    tap = Tap(tmp_path / "data", port=pos.path, idle_gap="0.3s").start()
    taps.append(tap)
    tap.ready()
    sales = [Sale(f"R3-00020{n}", [("SKU-2001", 1, False), ("SKU-3001", n + 1, n == 1)]) for n in range(3)]
    for sale in sales:
        pos.write(receipt_bytes(sale, cut=False), random.Random(3))
        time.sleep(0.5)
    tap.wait_captured(3)
    assert {m.event_id for m in tap.movements()} == set().union(*(s.event_ids() for s in sales))


def test_the_port_is_reopened_after_it_disappears_and_comes_back(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    link = tmp_path / "ttyPOS"
    before = PtyPair(link)
    pairs.append(before)
    tap = Tap(tmp_path / "data", port=str(link)).start()
    taps.append(tap)
    tap.ready()
    one, two, three = (receipt_bytes(Sale(f"R3-00030{n}", [("SKU-4001", 1, False)])) for n in range(3))
    before.write(one + two[:150])
    tap.wait_captured(1)
    time.sleep(0.2)
    before.close()  # unplugged mid-receipt: the adapter and its device node are gone
    wait_for(lambda: tap.source.health.state == "error", what="port loss shown")
    assert "POS port" in (tap.source.health.last_error or "")
    after = PtyPair(link)  # plugged back in: a new device behind the same stable name
    pairs.append(after)
    tap.ready()
    after.write(three)
    tap.wait_captured(2)
    assert {m.pos_transaction_id for m in tap.movements()} == {"R3-000300", "R3-000302"}
    (fragment,) = tap.data.glob("receipts/receipt-tap/*/partial-*.escpos.gz")
    assert gzip.decompress(fragment.read_bytes()) == two[:150]


def test_a_restart_captures_what_was_spooled_but_not_stored_exactly_once(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    pos = PtyPair()
    pairs.append(pos)
    receipts = [receipt_bytes(Sale(f"R3-00040{n}", [("SKU-5001", n + 1, False)])) for n in range(7)]
    data = tmp_path / "data"
    tap = Tap(data, port=pos.path).start()
    taps.append(tap)
    tap.ready()
    pos.write(b"".join(receipts[:3]))
    tap.wait_captured(3)
    tap.stop()
    # A killed agent's port thread had spooled these bytes; its capture loop never stored them.
    spool = data / "receipts" / "receipt-tap" / "spool"
    writer = SpoolWriter(spool, max(segment_numbers(spool)) + 1)
    writer.session("opened by an agent that was then killed")
    writer.idle()  # the line was quiet after it opened the port
    writer.data(receipts[3] + receipts[4][:100])
    writer.data(receipts[4][100:] + receipts[5][:77])
    writer.shutdown()
    restarted = Tap(data, port=pos.path).start()
    taps.append(restarted)
    restarted.ready()
    restarted.wait_captured(5)
    pos.write(receipts[6])
    restarted.wait_captured(6)
    txns = sorted(m.pos_transaction_id for m in restarted.movements())
    assert txns == ["R3-000400", "R3-000401", "R3-000402", "R3-000403", "R3-000404", "R3-000406"]
    assert restarted.source.captured_receipts == 3
    assert archived(data, 4) == receipts[3] and archived(data, 5) == receipts[4] and archived(data, 6) == receipts[6]
    assert len(segment_numbers(spool)) <= 2, "segments before the cursor are deleted"


def test_a_locked_outbox_delays_capture_and_loses_nothing(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap], fast_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import outbox.db

    monkeypatch.setattr(outbox.db, "BUSY_TIMEOUT_S", 0.2)
    pos, printer = PtyPair(), PtyPair()
    pairs += [pos, printer]
    printer.start_reading()
    tap = Tap(tmp_path / "data", port=pos.path, passthrough=printer.path).start()
    taps.append(tap)
    tap.ready()
    blocker = sqlite3.connect(tmp_path / "data" / "outbox.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database: every store is refused
    try:
        pos.write(SAMPLE, random.Random(4))
        wait_for(lambda: printer.received() == SAMPLE, what="printing unaffected")
        wait_for(lambda: "cannot store" in (tap.source.health.last_error or ""), what="refusal shown")
        assert tap.source.captured_receipts == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    tap.wait_captured(12)
    assert sorted(m.event_id for m in tap.movements()) == sorted(SAMPLE_IDS)
    wait_for(lambda: tap.source.health.state == "ok", what="healthy again")


def test_an_unreadable_receipt_is_an_exception_and_can_be_reprocessed_after_a_fix(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap], fast_retries: None
) -> None:
    pos = PtyPair()
    pairs.append(pos)
    data = tmp_path / "data"
    data.mkdir()
    template = data / "my-pos.toml"
    template.write_text(builtin_text("generic-58mm"))
    tap = Tap(data, port=pos.path, template=None, template_file="my-pos.toml").start()
    taps.append(tap)
    tap.ready()
    pos.write(golden_mixed_stream(), random.Random(5))
    tap.wait_captured(15)  # the last receipt has no cut: the idle gap ends it
    tap.wait_captured(16)
    queue = ExceptionQueue(tap.outbox.db)
    (unread,) = [e for e in queue.list() if e.code == "RECEIPT_UNPARSED"]
    assert unread.source_ref == "receipt-tap capture 000013" and unread.pos_transaction_id == "R3-008000"
    assert "TOTAL                      98.00" in unread.raw
    assert "receipts/receipt-tap/" in unread.message and "000013.escpos.gz" in unread.message
    assert tap.source.health.state == "ok", "one bad receipt does not put the source in error"

    # IT relaxes the template (this POS prints a total that includes a fee) and reprocesses the receipt
    template.write_text(builtin_text("generic-58mm").replace("check_total = true", "check_total = false"))
    time.sleep(0.5)
    (kept,) = data.glob("receipts/receipt-tap/*/000013.escpos.gz")
    reprocess = data / "receipts" / "receipt-tap" / "reprocess"
    reprocess.mkdir()
    (reprocess / kept.name).write_bytes(kept.read_bytes())
    wait_for(lambda: any(m.pos_transaction_id == "R3-008000" for m in tap.movements()), what="reprocessed")
    wait_for(lambda: (reprocess / "done" / kept.name).exists(), what="file moved to done")
    again = next(m for m in tap.movements() if m.pos_transaction_id == "R3-008000")
    assert again.source_ref == "receipt-tap reprocess 000013.escpos.gz receipt 000001 line 1"
    # reprocessing the same file again changes nothing
    count = len(tap.movements())
    (reprocess / kept.name).write_bytes(kept.read_bytes())
    wait_for(lambda: not (reprocess / kept.name).exists(), what="second copy handled")
    assert len(tap.movements()) == count


def test_receipts_older_than_the_retention_are_purged_by_whole_days(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    pos = PtyPair()
    pairs.append(pos)
    root = tmp_path / "data" / "receipts" / "receipt-tap"
    today = datetime.now(ZoneInfo("America/Chicago")).date()
    old, kept = root / (today - timedelta(days=31)).isoformat(), root / (today - timedelta(days=29)).isoformat()
    for folder in (old, kept):
        folder.mkdir(parents=True)
        (folder / "000001.escpos.gz").write_bytes(gzip.compress(b"receipt"))
    tap = Tap(tmp_path / "data", port=pos.path, receipt_retention_days=30).start()
    taps.append(tap)
    tap.ready()
    wait_for(lambda: not old.exists(), what="old day purged")
    assert (kept / "000001.escpos.gz").exists() and (root / "spool").is_dir()


def test_an_unplugged_printer_does_not_stop_capture_and_printing_resumes_when_it_is_back(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    pos, printer = PtyPair(), PtyPair(tmp_path / "ttyPRINTER")
    pairs += [pos, printer]
    printer.start_reading()
    tap = Tap(tmp_path / "data", port=pos.path, passthrough=printer.path).start()
    taps.append(tap)
    tap.ready()
    one, two, three = (receipt_bytes(Sale(f"R3-00050{n}", [("SKU-1002", 1, False)])) for n in range(3))
    pos.write(one)
    wait_for(lambda: printer.received() == one, what="first receipt printed")
    printer.close()
    wait_for(lambda: "not printed" in (tap.source.health.last_error or ""), what="printer loss shown")
    pos.write(two)
    tap.wait_captured(2)
    back = PtyPair(tmp_path / "ttyPRINTER")
    pairs.append(back)
    back.start_reading()
    time.sleep(0.5)  # longer than reconnect_every: the next bytes reopen the printer port
    pos.write(three)
    tap.wait_captured(3)
    wait_for(lambda: back.received() == three, what="printing resumed, byte for byte")
    wait_for(lambda: tap.source.health.state == "ok", what="healthy again")


def test_a_new_outbox_beside_an_old_archive_never_overwrites_an_audit_file(
    tmp_path: Path, pairs: list[PtyPair], taps: list[Tap]
) -> None:
    pos = PtyPair()
    pairs.append(pos)
    first, second = (receipt_bytes(Sale(f"R3-00050{n}", [("SKU-5001", n + 1, False)])) for n in range(2))
    data = tmp_path / "data"
    tap = Tap(data, port=pos.path).start()
    taps.append(tap)
    tap.ready()
    pos.write(first)
    tap.wait_captured(1)
    tap.stop()
    for leftover in [*data.glob("outbox.sqlite*"), *(data / "receipts" / "receipt-tap" / "spool").iterdir()]:
        leftover.unlink()  # a restored or rebuilt data folder: new outbox and spool, the archive stays
    again = Tap(data, port=pos.path).start()
    taps.append(again)
    again.ready()
    pos.write(second)
    again.wait_captured(1)  # capture numbers started again at 1
    kept = sorted(data.glob("receipts/receipt-tap/*/*.escpos.gz"))
    assert [p.name for p in kept] == ["000001-2.escpos.gz", "000001.escpos.gz"]
    assert {gzip.decompress(p.read_bytes()) for p in kept} == {first, second}
    assert again.cursor()["archive"].endswith("000001-2.escpos.gz")
