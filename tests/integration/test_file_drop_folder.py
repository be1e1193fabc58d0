"""file_drop on real folders watched by watchdog, with a real outbox: complete-file detection and hostile files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.capture import OutboxSink
from agent.domain import ItemRecord
from agent.mapping import ItemMaster
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from pos_adapters.base import Batch, CaptureRefused, SourceContext, SubmitResult
from pos_adapters.file_drop import FileDropSettings, FileDropSource
from pos_adapters.reading import MalformedFile
from tests.support.helpers import wait_for

HEADER = "txn,line,at,item,qty\n"
COLUMNS = {"pos_transaction_id": "txn", "line_no": "line", "occurred_at": "at", "item": "item", "quantity": "qty"}
ITEMS = ItemMaster([ItemRecord(sku="SKU-1")])


def rows(txn: str, n: int, qty: int = 12) -> str:
    return "".join(f"{txn},{i},2026-11-20T09:00:00,SKU-1,{qty + i}\n" for i in range(1, n + 1))


def make_source(tmp_path: Path, **settings: Any) -> FileDropSource:
    ctx = SourceContext(
        store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=tmp_path, data_dir=tmp_path, location="S001"
    )
    values: dict[str, Any] = {
        "name": "drop",
        "kind": "file_drop",
        "path": "inbox",
        "columns": COLUMNS,
        "default_kind": "sale",
        "settle": "0.3s",
        "rescan_every": "1s",
        **settings,
    }
    return FileDropSource(FileDropSettings.model_validate(values), ctx)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(tmp_path / "data" / "outbox.sqlite")
    yield box
    box.close()


@contextmanager
def watching(source: FileDropSource, outbox: Outbox) -> Iterator[FileDropSource]:
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(OutboxSink(source.name, outbox, ITEMS, lambda _n: None), stop))
    thread.start()
    try:
        wait_for(lambda: source.health.state == "ok", what="source watching")
        yield source
    finally:
        stop.set()
        source.wake()
        thread.join(timeout=15)


def quantities(outbox: Outbox) -> dict[tuple[str, int], int]:
    with outbox.db.read() as conn:
        found = conn.exec_driver_sql("SELECT pos_transaction_id, line_no, payload FROM movement").all()
    return {(t, n): int(json.loads(p)["original_quantity"]) for t, n, p in found}


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    path, text, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    data = text.encode()
    with open(path, "wb") as handle:  # held open throughout, like a slow copy onto a share
        for start in range(0, len(data), 37):  # 37 bytes: pieces end in the middle of rows
            handle.write(data[start : start + 37])
            handle.flush()
            time.sleep(pause)
    print(time.time(), flush=True)
    """
)


def test_a_slow_writer_in_another_process_is_not_read_early(tmp_path: Path, outbox: Outbox) -> None:
    source = make_source(tmp_path, settle="0.3s")
    text = HEADER + rows("SLOW", 5)
    inbox = tmp_path / "inbox"
    with watching(source, outbox):
        writer = subprocess.Popen(
            [sys.executable, "-c", SLOW_WRITER, str(inbox / "slow.csv"), text, "0.45"],  # pauses > settle
            stdout=subprocess.PIPE,
            text=True,
        )
        closed_at = float(writer.communicate(timeout=60)[0])
        wait_for(lambda: (inbox / "done" / "slow.csv").exists(), timeout=30, what="slow file archived")
    assert (inbox / "done" / "slow.csv").read_text() == text
    assert quantities(outbox) == {("SLOW", i): 12 + i for i in range(1, 6)}
    with outbox.db.read() as conn:
        first_stored = conn.exec_driver_sql("SELECT MIN(enqueued_at) FROM movement").scalar_one()
    assert first_stored >= closed_at - 0.05, "rows were stored before the writer had finished"
    assert ExceptionQueue(outbox.db).list() == []


def test_files_at_start_up_renamed_in_moved_in_and_written_in_place(tmp_path: Path, outbox: Outbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "at-start.csv").write_text(HEADER + rows("START", 2))
    elsewhere = tmp_path / "staging"
    elsewhere.mkdir()
    with watching(make_source(tmp_path), outbox):
        part = inbox / "renamed.csv.part"
        part.write_text(HEADER + rows("RENAMED", 2))
        part.replace(inbox / "renamed.csv")
        (elsewhere / "moved.csv").write_text(HEADER + rows("MOVED", 2))
        (elsewhere / "moved.csv").rename(inbox / "moved.csv")
        (inbox / "direct.csv").write_text(HEADER + rows("DIRECT", 2))
        wanted = ["at-start.csv", "direct.csv", "moved.csv", "renamed.csv"]
        wait_for(lambda: files(inbox / "done") == wanted, timeout=30, what="all four archived")
    assert {t for t, _ in quantities(outbox)} == {"START", "RENAMED", "MOVED", "DIRECT"}
    assert len(quantities(outbox)) == 8


def test_odd_names_are_captured_and_shown_safely(tmp_path: Path, outbox: Outbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    long_name = "x" * 246 + ".csv"  # 250 bytes: no room left for a suffix
    names = {
        "with space.csv": "SPACE",
        "ünïcødé-日本.csv": "UNICODE",
        "-rf --no-preserve-root.csv": "DASHES",
        "a..b.csv": "DOTS",
        long_name: "LONG",
        os.fsdecode(b"bad-\xff\xfe.csv"): "BYTES",
    }
    for name, txn in names.items():
        (inbox / name).write_text(HEADER + rows(txn, 1))
    (inbox / "..hidden.csv").write_text(HEADER + rows("HIDDEN", 1))
    (inbox / os.fsdecode(b"broken-\xff.csv")).write_text("no header we know\n1,2\n")
    (inbox / ("y" * 250 + ".csv")).write_text("nope\n")
    with watching(make_source(tmp_path), outbox):
        wait_for(lambda: len(files(inbox / "done")) == len(names), timeout=30, what="odd names archived")
        wait_for(lambda: len(files(inbox / "quarantine")) == 4, timeout=30, what="bad ones quarantined")
    assert {t for t, _ in quantities(outbox)} == set(names.values())
    assert (inbox / "..hidden.csv").exists()  # a dot file is never read, whatever follows the dot
    refs = {m.source_ref for t in names.values() for m in outbox.movements_of(t)}
    assert "bad-\ufffd\ufffd.csv row 2" in refs and "ünïcødé-日本.csv row 2" in refs
    assert all(len(os.fsencode(n)) <= 255 for n in files(inbox / "done") + files(inbox / "quarantine"))
    reasons = [inbox / "quarantine" / n for n in files(inbox / "quarantine") if n.endswith(".reason.txt")]
    texts = sorted(p.read_text(encoding="utf-8") for p in reasons)
    assert any("File:      broken-\ufffd.csv" in t and "missing column" in t for t in texts)
    assert any("Stored as:" in t and "y" * 200 in t for t in texts)


def test_oversize_and_hostile_files_are_quarantined_with_their_bytes_kept(tmp_path: Path, outbox: Outbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    big = HEADER + rows("BIG", 100)
    (inbox / "big.csv").write_text(big)
    with watching(make_source(tmp_path, max_file_mb=0.001), outbox):
        wait_for(lambda: (inbox / "quarantine" / "big.csv.reason.txt").exists(), timeout=30)
    reason = (inbox / "quarantine" / "big.csv.reason.txt").read_text()
    assert "over this source's limit of max_file_mb = 0.001" in reason
    assert (inbox / "quarantine" / "big.csv").read_text() == big and quantities(outbox) == {}

    xml = tmp_path / "xml"
    (xml / "inbox").mkdir(parents=True)
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><POSLog>&a;</POSLog>'
    (xml / "inbox" / "bomb.xml").write_text(bomb)
    with watching(make_source(xml, format="poslog", columns={}, default_kind=None), outbox):
        wait_for(lambda: (xml / "inbox" / "quarantine" / "bomb.xml.reason.txt").exists(), timeout=30)
    assert "document type (DTD)" in (xml / "inbox" / "quarantine" / "bomb.xml.reason.txt").read_text()
    assert (xml / "inbox" / "quarantine" / "bomb.xml").read_text() == bomb


class FlakySink:
    """The real sink, with a hook before each submit (to fail it, or to touch the file)."""

    def __init__(self, outbox: Outbox, before: Callable[[int], None]) -> None:
        self.inner = OutboxSink("drop", outbox, ITEMS, lambda _n: None)
        self.before = before
        self.calls = 0

    def submit(self, batch: Batch) -> SubmitResult:
        self.calls += 1
        self.before(self.calls)
        return self.inner.submit(batch)

    def cursor(self, key: str) -> dict[str, Any] | None:
        return self.inner.cursor(key)

    def movements_of(self, pos_transaction_id: str) -> list[Any]:
        return self.inner.movements_of(pos_transaction_id)


def test_a_crash_mid_file_resumes_after_the_last_stored_chunk(tmp_path: Path, outbox: Outbox) -> None:
    source = make_source(tmp_path, chunk_rows=2, settle=0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "day.csv").write_text(HEADER + rows("DAY", 7))

    def refuse_third(call: int) -> None:
        if call == 3:
            raise CaptureRefused("disk full")

    source.scan(FlakySink(outbox, refuse_third), threading.Event())
    assert sorted(quantities(outbox)) == [("DAY", i) for i in (1, 2, 3, 4)] and (inbox / "day.csv").exists()
    source._retry_at.clear()
    resumed = FlakySink(outbox, lambda call: None)
    source.scan(resumed, threading.Event())
    assert sorted(quantities(outbox)) == [("DAY", i) for i in range(1, 8)]
    assert resumed.calls == 2  # rows 5-6 and 7: the stored chunks were not sent again
    assert (inbox / "done" / "day.csv").exists()


def test_a_file_that_grows_while_read_is_read_again_not_archived(tmp_path: Path, outbox: Outbox) -> None:
    source = make_source(tmp_path, chunk_rows=2, settle=0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "growing.csv"
    path.write_text(HEADER + rows("G", 4))

    def writer_still_at_it(call: int) -> None:
        if call == 1:
            with open(path, "a") as handle:
                handle.write("G,5,2026-11-20T09:00:00,SKU-1,17\n")

    source.scan(FlakySink(outbox, writer_still_at_it), threading.Event())
    assert path.exists() and files(inbox / "done") == []
    source.scan(FlakySink(outbox, lambda call: None), threading.Event())
    assert quantities(outbox) == {("G", i): 12 + i for i in range(1, 6)}
    assert files(inbox / "done") == ["growing.csv"]


def test_a_defect_costs_one_file_never_the_source(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(tmp_path, settle=0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text(HEADER + rows("A", 1))
    (inbox / "b.csv").write_text(HEADER + rows("B", 1))
    real = source.read

    def defective(path: Path, name: str | None = None) -> Iterator[Any]:
        if path.name == "a.csv":
            raise RecursionError("maximum recursion depth exceeded")
        return real(path, name)

    monkeypatch.setattr(source, "read", defective)
    source.scan(OutboxSink("drop", outbox, ITEMS, lambda _n: None), threading.Event())
    assert "unexpected error (RecursionError" in (inbox / "quarantine" / "a.csv.reason.txt").read_text()
    assert files(inbox / "done") == ["b.csv"] and set(quantities(outbox)) == {("B", 1)}


PAUSING_WRITER = textwrap.dedent(
    """
    import sys, time
    path, text, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with open(path, "w") as handle:
        for row in text.splitlines(keepends=True):  # each pause falls in the middle of a row
            handle.write(row[: len(row) // 2])
            handle.flush()
            time.sleep(pause)
            handle.write(row[len(row) // 2 :])
            handle.flush()
    print(time.time(), flush=True)
    """
)


def test_polling_a_writer_that_pauses_mid_row_longer_than_settle_is_waited_for(tmp_path: Path, outbox: Outbox) -> None:
    # Polling (network shares, other OSes) sees no opens or closes: only the cut-off last row tells.
    source = make_source(tmp_path, settle="0.2s", polling=True, open_timeout="30s")
    text = HEADER + rows("POLL", 4)
    inbox = tmp_path / "inbox"
    with watching(source, outbox):
        writer = subprocess.Popen(
            [sys.executable, "-c", PAUSING_WRITER, str(inbox / "share.csv"), text, "0.6"],  # 3 x settle
            stdout=subprocess.PIPE,
            text=True,
        )
        closed_at = float(writer.communicate(timeout=60)[0])
        wait_for(lambda: (inbox / "done" / "share.csv").exists(), timeout=30, what="file archived")
    assert (inbox / "done" / "share.csv").read_text() == text
    assert quantities(outbox) == {("POLL", i): 12 + i for i in range(1, 5)}
    with outbox.db.read() as conn:
        first_stored = conn.exec_driver_sql("SELECT MIN(enqueued_at) FROM movement").scalar_one()
    assert first_stored >= closed_at - 0.05, "rows were stored before the writer had finished"
    assert files(inbox / "quarantine") == []


POSLOG_TXN = (
    "<Transaction><RetailStoreID>1</RetailStoreID><WorkstationID>7</WorkstationID><SequenceNumber>{seq}"
    "</SequenceNumber><BusinessDayDate>2026-11-20</BusinessDayDate><EndDateTime>2026-11-20T10:00:00</EndDateTime>"
    "<RetailTransaction><LineItem><SequenceNumber>1</SequenceNumber><Sale><ItemID>SKU-1</ItemID>"
    "<Quantity>2</Quantity></Sale></LineItem></RetailTransaction></Transaction>"
)


def test_a_cut_off_poslog_waits_for_its_end_then_is_quarantined_only_after_open_timeout(
    tmp_path: Path, outbox: Outbox
) -> None:
    source = make_source(tmp_path, format="poslog", columns={}, default_kind=None, settle=0, open_timeout="1s")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sink = OutboxSink("drop", outbox, ITEMS, lambda _n: None)
    head = '<?xml version="1.0"?>\n<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/">'
    growing = inbox / "day.xml"
    growing.write_text(head + POSLOG_TXN.format(seq=1))  # the writer paused here
    assert source.scan(sink, threading.Event()) > 0.5  # waited for, not read, not quarantined
    assert growing.exists() and files(inbox / "quarantine") == [] and quantities(outbox) == {}
    with open(growing, "a") as handle:
        handle.write(POSLOG_TXN.format(seq=2) + "</POSLog>\n")
    source.scan(sink, threading.Event())  # a changed file settles again (settle = 0)
    source.scan(sink, threading.Event())
    assert files(inbox / "done") == ["day.xml"] and len(quantities(outbox)) == 2

    (inbox / "abandoned.xml").write_text(head + POSLOG_TXN.format(seq=3)[:-30])
    source.scan(sink, threading.Event())
    assert files(inbox / "quarantine") == []
    wait_for(
        lambda: source.scan(sink, threading.Event()) and (inbox / "quarantine" / "abandoned.xml.reason.txt").exists(),
        timeout=10,
        what="abandoned file quarantined after open_timeout",
    )
    assert len(quantities(outbox)) == 2


def test_a_file_that_looks_broken_while_its_writer_is_at_it_is_read_again_not_quarantined(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(tmp_path, settle=0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "busy.csv"
    path.write_text(HEADER + rows("B", 2))
    real = source.read
    calls = 0

    def read_while_the_writer_appends(p: Path, name: str | None = None) -> Iterator[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:  # what the reader saw was half a rewrite: broken, and the file changed under it
            with open(path, "a") as handle:
                handle.write("B,3,2026-11-20T09:00:00,SKU-1,15\n")
            raise MalformedFile("missing column 'qty' in the header")
        return real(p, name)

    monkeypatch.setattr(source, "read", read_while_the_writer_appends)
    sink = OutboxSink("drop", outbox, ITEMS, lambda _n: None)
    source.scan(sink, threading.Event())
    assert path.exists() and files(inbox / "quarantine") == []
    source.scan(sink, threading.Event())
    source.scan(sink, threading.Event())
    assert files(inbox / "done") == ["busy.csv"] and sorted(quantities(outbox)) == [("B", 1), ("B", 2), ("B", 3)]


def test_a_closed_file_needs_only_settle_after_close(tmp_path: Path, outbox: Outbox) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("only inotify reports who closes a file")
    source = make_source(tmp_path, settle="20s")  # without the close event this file would wait 20 s
    inbox = tmp_path / "inbox"
    with watching(source, outbox):
        written = time.monotonic()
        (inbox / "quick.csv").write_text(HEADER + rows("Q", 2))
        wait_for(lambda: (inbox / "done" / "quick.csv").exists(), timeout=10, what="closed file archived")
        took = time.monotonic() - written
    assert took < 5, f"took {took:.1f} s"
    assert sorted(quantities(outbox)) == [("Q", 1), ("Q", 2)]


def test_a_file_written_aside_and_renamed_in_needs_only_settle_after_close(tmp_path: Path, outbox: Outbox) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("only inotify reports who closes a file")
    source = make_source(tmp_path, settle="20s")
    inbox = tmp_path / "inbox"
    with watching(source, outbox):
        for n in range(3):  # the close is handled after the rename: the file is known closed at the rename
            part = inbox / f".export{n}.csv.part"
            part.write_text(HEADER + rows(f"R{n}", 2))
            part.replace(inbox / f"export{n}.csv")
            wait_for(lambda n=n: (inbox / "done" / f"export{n}.csv").exists(), timeout=10, what="renamed file archived")
    assert len(quantities(outbox)) == 6


def test_a_crash_between_archive_link_and_unlink_finishes_the_move_once(tmp_path: Path, outbox: Outbox) -> None:
    source = make_source(tmp_path)
    inbox = tmp_path / "inbox"
    with watching(source, outbox):
        (inbox / "day.csv").write_text(HEADER + rows("D", 3))
        wait_for(lambda: (inbox / "done" / "day.csv").exists(), what="archived")
        os.link(inbox / "done" / "day.csv", inbox / "day.csv")  # what a crash between the two steps leaves
        source.wake()
        wait_for(lambda: not (inbox / "day.csv").exists(), what="the inbox name removed")
    assert files(inbox / "done") == ["day.csv"], "no second archive copy"
    assert (inbox / "done" / "day.csv").read_text() == HEADER + rows("D", 3)
    assert sorted(quantities(outbox)) == [("D", 1), ("D", 2), ("D", 3)]


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ('<?xml version="1.0"?><POSLog/>', False),  # an empty export: the root is its own end
        ('<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" MajorVersion="6" />\n', False),
        ("<POSLog><Transaction/></POSLog>\n<!-- exported by NCR -->\n<?checksum 123?>\n", False),
        ("<POSLog><Transaction/></POSLog>", False),
        ("<POSLog><Transaction/>", True),  # cut after a self-closing child
        ("<POSLog><Transaction><LineItem/></Transaction></POS", True),
    ],
)
def test_what_counts_as_a_cut_off_poslog(tmp_path: Path, text: str, cut: bool) -> None:
    from pos_adapters.file_drop import _cut_off

    path = tmp_path / "x.xml"
    path.write_text(text)
    assert _cut_off(path, "poslog", "utf-8") is cut
