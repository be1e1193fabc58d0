"""Hostile lines appended to a live POS journal (JSON lines and CSV), read by the real journal source.

The journal is written in arbitrary pieces (lines cut anywhere, polls in between, as a POS writing
while possync reads), mixing hostile lines with valid transactions, into a real outbox. Every poll
finishes; valid lines are all captured exactly once; every hostile line is an issue with a reason.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.capture import OutboxSink
from agent.domain import ItemRecord
from agent.mapping import ItemMaster
from outbox.queue import Outbox
from pos_adapters.journal import JournalSettings, JournalSource
from tests.fuzz._support import FUZZ, Counter, bounded, context, hostile_text, json_values

ITEMS = ItemMaster([ItemRecord(sku="SKU-1")])
NAMES = itertools.count()
CSV_COLUMNS = {"pos_transaction_id": "txn", "line_no": "line", "occurred_at": "at", "item": "item", "quantity": "qty"}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Outbox]]:
    folder = tmp_path_factory.mktemp("fuzz-journal")
    outbox = Outbox.open_file(folder / "outbox.sqlite")
    yield folder, outbox
    outbox.close()


def json_line(txn: str) -> bytes:
    doc = {
        "transaction_id": txn,
        "occurred_at": "2026-11-20T08:00:00",
        "kind": "sale",
        "lines": [{"item": "SKU-1", "quantity": 1}],
    }
    return json.dumps(doc).encode()


def csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue().encode("utf-8", "surrogateescape")


def hostile_lines(fmt: str) -> st.SearchStrategy[bytes]:
    raw = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" "))
    if fmt == "jsonl":
        values = json_values().map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    else:
        values = st.lists(hostile_text(), max_size=7).map(csv_line)
    return st.one_of(raw, values).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@given(data=st.data())
@FUZZ
def test_hostile_journal_lines_never_stop_the_valid_ones(
    place: tuple[Path, Outbox], fmt: str, data: st.DataObject
) -> None:
    Counter.add(f"journal {fmt}")
    folder, outbox = place
    name = f"ej{next(NAMES):08d}"  # fixed length: the draws below must not depend on it
    settings: dict[str, Any] = {"name": name, "kind": "journal", "path": f"{name}.log", "format": fmt, "max_line_kb": 4}
    if fmt == "csv":
        settings |= {"columns": CSV_COLUMNS, "default_kind": "sale"}
    source = JournalSource(JournalSettings.model_validate(settings), context(folder))
    lines = data.draw(st.lists(hostile_lines(fmt), min_size=1, max_size=6))
    good = set()
    for n, at in enumerate(sorted(set(data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=3))))):
        txn = f"{name}-GOOD-{n}"
        good.add(txn)
        lines.insert(
            min(at, len(lines)),
            json_line(txn) if fmt == "jsonl" else csv_line([txn, "1", "2026-11-20T08:00:00", "SKU-1", "1"]),
        )
    if fmt == "csv":
        lines.insert(0, b"txn,line,at,item,qty")
    blob = b"\n".join(lines) + b"\n"
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(blob)), max_size=4))))
    sink = OutboxSink(name, outbox, ITEMS, lambda _n: None)
    path = folder / f"{name}.log"
    path.write_bytes(b"")
    start = 0
    try:
        for cut in [*cuts, len(blob)]:
            with open(path, "ab") as handle:
                handle.write(blob[start:cut])
            start = cut
            with bounded("journal poll"):
                source.poll(sink, now=1000.0)
    finally:
        source.close()
    for txn in good:
        assert len(outbox.movements_of(txn)) == 1, f"{txn}: a valid line was lost or read twice"
