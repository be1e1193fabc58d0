"""The product bugs the hostile-input tests found, each pinned by the smallest input that showed it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from agent.capture import OutboxSink
from agent.domain import ItemRecord
from agent.mapping import ItemMaster
from outbox.queue import Outbox
from pos_adapters.http_ingest import HttpIngestSettings, HttpIngestSource
from pos_adapters.poslog import read_poslog
from pos_adapters.reading import MalformedFile
from tests.fuzz._support import context
from tests.integration.test_file_drop_folder import HEADER, make_source

ITEMS = ItemMaster([ItemRecord(sku="SKU-1")])


def test_a_deeply_nested_ingest_body_is_a_400_with_a_reason(tmp_path: Path) -> None:
    source = HttpIngestSource(HttpIngestSettings(name="pos-api", kind="http_ingest"), context(tmp_path))
    response = source.accept(b"[" * 5000 + b"]" * 5000)  # was: RecursionError, answered 500
    assert response.status_code == 400
    assert "nested too deeply" in json.loads(bytes(response.body))["message"]


def test_an_unknown_xml_encoding_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "log.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="x-unknown"?><POSLog/>')
    try:  # was: LookupError, quarantined as "an unexpected error ... please report this"
        list(read_poslog(path, context(tmp_path), source="poslog"))
    except MalformedFile as exc:
        assert "encoding possync does not know" in str(exc)
    else:
        raise AssertionError("the file was not refused")


def test_a_huge_line_number_is_an_issue_not_a_poison_batch(tmp_path: Path) -> None:
    outbox = Outbox.open_file(tmp_path / "data" / "outbox.sqlite")
    try:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        (inbox / "day.csv").write_text(
            HEADER + "A,1,2026-11-20T09:00:00,SKU-1,2\n" + "B," + "9" * 30 + ",2026-11-20T09:00:00,SKU-1,2\n"
        )
        source = make_source(tmp_path, settle=0)
        # was: "Python int too large to convert to SQLite INTEGER", the file retried for ever, row A never stored
        source.scan(OutboxSink("drop", outbox, ITEMS, lambda _n: None), threading.Event())
        assert (inbox / "done" / "day.csv").exists()
        assert len(outbox.movements_of("A")) == 1 and outbox.movements_of("B") == []
        with outbox.db.read() as conn:
            codes = list(conn.exec_driver_sql("SELECT code FROM exception_record").scalars())
        assert codes == ["BAD_LINE_NO"]
    finally:
        outbox.close()


def test_a_broken_print_job_does_not_swallow_the_next_receipt_after_an_idle_gap() -> None:
    from pos_adapters.escpos import ReceiptSplitter
    from tests.support.serial_tap import Sale, receipt_bytes

    good = receipt_bytes(Sale("R3-GOOD", [("SKU-5001", 1, False)]))
    splitter = ReceiptSplitter(synced=True)
    out = [*splitter.feed(b"\x1b&\x01"), *splitter.idle(ends_receipt=True)]  # ESC & cut short, then quiet
    out += [*splitter.feed(good), *splitter.idle(ends_receipt=True)]
    assert [r.raw for r in out] == [good]  # was: the half command's declared length ate the next receipt


def test_an_astronomical_quantity_is_an_issue_not_an_overflow(tmp_path: Path) -> None:
    from pos_adapters.csv_format import CsvLayout, read_csv

    path = tmp_path / "q.csv"
    path.write_text(HEADER + "A,1,2026-11-20T09:00:00,SKU-1,1e999999999\nB,1,2026-11-20T09:00:00,SKU-1,1e-999999999\n")
    layout = CsvLayout(
        columns={
            "pos_transaction_id": "txn",
            "line_no": "line",
            "occurred_at": "at",
            "item": "item",
            "quantity": "qty",
        },
        default_kind="sale",
    )
    # was: decimal.Overflow from abs() escaped the reader and cost the whole file
    (chunk,) = list(read_csv(path, layout, context(tmp_path), source="drop"))
    assert [i.code for i in chunk.issues] == ["BAD_NUMBER", "BAD_NUMBER"] and chunk.movements == []
