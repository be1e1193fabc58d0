"""The journal source against a real outbox: half lines, restarts, rotation, truncation, gaps."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.capture import OutboxSink
from agent.domain import ItemRecord
from agent.mapping import ItemMaster
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from pos_adapters.base import SourceContext
from pos_adapters.journal import JournalSettings, JournalSource

ITEMS = ItemMaster([ItemRecord(sku="SKU-1")])


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(tmp_path / "data" / "outbox.sqlite")
    yield box
    box.close()


def source(tmp_path: Path, **settings: object) -> JournalSource:
    ctx = SourceContext(
        store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=tmp_path, data_dir=tmp_path, location="S001"
    )
    values: dict[str, object] = {"name": "ej", "kind": "journal", "path": "pos/journal.log", "settle": 2, **settings}
    return JournalSource(JournalSettings.model_validate(values), ctx)


def line(txn: str, qty: int = 1) -> bytes:
    doc = {
        "transaction_id": txn,
        "occurred_at": "2026-11-20T08:00:00",
        "kind": "sale",
        "lines": [{"item": "SKU-1", "quantity": qty}],
    }
    return (json.dumps(doc) + "\n").encode()


def captured(outbox: Outbox) -> list[str]:
    with outbox.db.read() as conn:
        return list(conn.exec_driver_sql("SELECT pos_transaction_id FROM movement ORDER BY seq").scalars())


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def journal(tmp_path: Path) -> Path:
    folder = tmp_path / "pos"
    folder.mkdir(exist_ok=True)
    return folder / "journal.log"


def test_only_complete_lines_are_read_and_restarts_resume(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    whole = line("T3", 12)
    path.write_bytes(line("T1") + line("T2") + whole[:40])  # the POS is half-way through T3
    first = source(tmp_path)
    first.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    assert captured(outbox) == ["T1", "T2"]
    append(path, whole[40:])
    first.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    assert captured(outbox) == ["T1", "T2", "T3"]
    assert outbox.movements_of("T3")[0].quantity == 12  # never read as the half line
    first.close()
    append(path, line("T4"))
    second = source(tmp_path)  # a restarted agent
    second.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    assert captured(outbox) == ["T1", "T2", "T3", "T4"]
    (movement,) = outbox.movements_of("T4")
    assert movement.source_ref == "journal.log line 4"
    stored = outbox.cursor("ej", "journal")
    assert stored is not None and stored["offset"] == path.stat().st_size and stored["line"] == 4


def test_live_rotation_finishes_the_old_file_first(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    sink = OutboxSink("ej", outbox, ITEMS, lambda _n: None)
    tail = source(tmp_path)
    path.write_bytes(line("A1"))
    tail.poll(sink, now=100.0)
    append(path, line("A2"))
    with open(path, "ab") as still_open:  # the POS keeps writing to the old file for a moment
        path.rename(path.with_name("journal.log.1"))
        path.write_bytes(line("B1"))
        tail.poll(sink, now=100.5)  # rotation seen; the old file is still being finished
        still_open.write(line("A3") + b'{"transaction_id": "A4"')
    tail.poll(sink, now=101.0)
    assert captured(outbox) == ["A1", "A2", "A3"]
    append(
        path.with_name("journal.log.1"),
        b', "occurred_at": "2026-11-20T08:00:00", "kind": "sale", "lines": [{"item": "SKU-1", "quantity": 1}]}',
    )
    tail.poll(sink, now=103.0)  # settle passed: the last unfinished line is taken as it is, then B
    assert captured(outbox) == ["A1", "A2", "A3", "A4", "B1"]
    append(path, line("B2"))
    tail.poll(sink, now=104.0)
    assert captured(outbox) == ["A1", "A2", "A3", "A4", "B1", "B2"]
    assert outbox.movements_of("B2")[0].source_ref == "journal.log line 2"


def test_rotations_while_stopped_are_read_in_order(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    first = source(tmp_path)
    path.write_bytes(line("A1"))
    first.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    first.close()
    append(path, line("A2"))  # written after the agent stopped
    path.rename(path.with_name("journal.log.2"))
    rotated = path.with_name("journal.log.1")
    rotated.write_bytes(line("B1"))
    os.utime(rotated, ns=(path.with_name("journal.log.2").stat().st_mtime_ns + 10**9,) * 2)
    path.write_bytes(line("C1"))
    path.with_name("journal.log.3.gz").write_bytes(b"\x1f\x8b not read")
    second = source(tmp_path)
    second.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    assert captured(outbox) == ["A1", "A2", "B1", "C1"]
    assert ExceptionQueue(outbox.db).list() == []


def test_copytruncate_and_truncation_in_place(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    sink = OutboxSink("ej", outbox, ITEMS, lambda _n: None)
    tail = source(tmp_path)
    path.write_bytes(line("A1"))
    tail.poll(sink)
    append(path, line("A2"))
    path.with_name("journal.log.1").write_bytes(path.read_bytes())  # logrotate copytruncate
    path.write_bytes(line("B1"))
    tail.poll(sink)
    assert captured(outbox) == ["A1", "A2", "B1"]
    path.write_bytes(b"")  # the POS empties its journal at day end
    tail.poll(sink)
    path.write_bytes(line("C1") + line("C2"))
    tail.poll(sink)
    assert captured(outbox) == ["A1", "A2", "B1", "C1", "C2"]
    with open(path, "r+b") as handle:  # rewritten in place, longer than before: its first bytes differ
        handle.write(line("D1") + line("D2") + line("D3"))
    tail.poll(sink)
    assert captured(outbox)[-3:] == ["D1", "D2", "D3"]
    assert ExceptionQueue(outbox.db).list() == []


def test_a_rotated_file_that_vanished_is_a_visible_gap(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    first = source(tmp_path)
    path.write_bytes(line("A1"))
    first.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    first.close()
    fresh = path.with_name(".new")
    fresh.write_bytes(line("B1"))  # a new file (a new inode) replaces the old one, which is gone
    path.unlink()
    fresh.rename(path)
    second = source(tmp_path)
    second.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    assert captured(outbox) == ["A1", "B1"]
    (gap,) = ExceptionQueue(outbox.db).list()
    assert gap.code == "JOURNAL_GAP" and "journal.log" in gap.message and "after line 1" in gap.source_ref


def test_start_at_end_and_over_long_lines(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    path.write_bytes(line("OLD1") + line("OLD2") + b'{"half')
    tail = source(tmp_path, start_at="end", max_line_kb=1)
    sink = OutboxSink("ej", outbox, ITEMS, lambda _n: None)
    tail.poll(sink)
    assert captured(outbox) == []
    append(path, b' line"}\n' + b"x" * 3000 + b"\n" + line("NEW1"))
    tail.poll(sink)
    assert captured(outbox) == ["NEW1"]
    codes = [(v.code, v.source_ref) for v in ExceptionQueue(outbox.db).list()]
    assert codes == [("BAD_JSON", "journal.log line 3"), ("LINE_TOO_LONG", "journal.log line 4")]
    assert outbox.movements_of("NEW1")[0].source_ref == "journal.log line 5"


def test_csv_journal_resumed_mid_file_rereads_its_header(tmp_path: Path, outbox: Outbox) -> None:
    columns = {"pos_transaction_id": "t", "line_no": "n", "occurred_at": "at", "item": "i", "quantity": "q"}
    settings = {"path": "pos/j.csv", "format": "csv", "columns": columns, "default_kind": "sale"}
    path = tmp_path / "pos" / "j.csv"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbfq,i,t,n,at\r\n1,SKU-1,C1,1,2026-11-20T08:00:00\r\n")
    first = source(tmp_path, **settings)
    first.poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    first.close()
    append(path, b"2,SKU-1,C2,1,2026-11-20T08:01:00\r\n")
    source(tmp_path, **settings).poll(OutboxSink("ej", outbox, ITEMS, lambda _n: None))
    assert captured(outbox) == ["C1", "C2"] and outbox.movements_of("C2")[0].quantity == 2


def test_csv_journals_need_line_numbers() -> None:
    columns = {"pos_transaction_id": "t", "occurred_at": "at", "item": "i", "quantity": "q"}
    with pytest.raises(ValidationError, match="must map line_no for a CSV journal"):
        JournalSettings.model_validate(
            {
                "name": "j",
                "kind": "journal",
                "path": "j.csv",
                "format": "csv",
                "columns": columns,
                "default_kind": "sale",
            }
        )
    with pytest.raises(ValidationError, match="apply to format = 'csv' only"):
        JournalSettings.model_validate({"name": "j", "kind": "journal", "path": "j", "columns": columns})


def test_without_holding_the_file_open_as_on_windows(tmp_path: Path, outbox: Outbox) -> None:
    path = journal(tmp_path)
    sink = OutboxSink("ej", outbox, ITEMS, lambda _n: None)
    tail = source(tmp_path)
    tail.keep_open = False
    half = line("A2", 20)
    path.write_bytes(line("A1") + half[:25])
    tail.poll(sink)
    assert captured(outbox) == ["A1"] and tail.current is None
    append(path, half[25:] + line("A3"))
    tail.poll(sink)
    append(path, line("A4"))
    path.rename(path.with_name("journal.log.1"))
    path.write_bytes(line("B1"))
    tail.poll(sink)
    path.write_bytes(line("C1"))  # truncated and rewritten by the POS
    tail.poll(sink)
    assert captured(outbox) == ["A1", "A2", "A3", "A4", "B1", "C1"]
    assert outbox.movements_of("A2")[0].quantity == 20
