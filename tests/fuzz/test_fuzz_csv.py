"""Hostile CSV exports through the file_drop reader: the mapped layout, decimal-comma cp1252, and every preset.

Each generated file is read exactly as the live source reads it (``FileDropSource.read``). It is
either read, with every bad row an issue naming the row and the reason, or refused as a whole with
``MalformedFile`` (quarantined with that reason). Rows written as well-formed CSV next to hostile
ones are always captured. An unbalanced quote legitimately joins the rows after it into one field
(that is CSV); those files are only required to end in a reason, not to keep their neighbours.
"""

from __future__ import annotations

import csv
import io
import tomllib
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
from pos_adapters.base import Batch
from pos_adapters.file_drop import FileDropSettings, FileDropSource
from pos_adapters.reading import MalformedFile
from tests.fuzz._support import FUZZ, Counter, bounded, context, hostile_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "file_drop"
CASES = ["csv-square-items", "csv-shopify-orders", "csv-decimal-comma-cp1252", "sample-export"]
MAPPED = {
    "name": "drop",
    "kind": "file_drop",
    "path": ".",
    "default_kind": "sale",
    "columns": {"pos_transaction_id": "txn", "line_no": "line", "occurred_at": "at", "item": "item", "quantity": "qty"},
}
ITEMS = ItemMaster([ItemRecord(sku="SKU-1")])
HEADER = ["txn", "line", "at", "item", "qty"]


def source_of(settings: dict[str, Any], folder: Path) -> FileDropSource:
    return FileDropSource(FileDropSettings.model_validate(settings), context(folder))


def read_all(source: FileDropSource, path: Path) -> tuple[list[Any], str | None]:
    """Read a file like the live source; return (chunks, reason if refused as a whole)."""
    chunks: list[Any] = []
    try:
        with bounded(f"csv reader ({path.name})"):
            for chunk in source.read(path):
                chunks.append(chunk)
    except MalformedFile as exc:
        assert str(exc).strip(), "a refused file must say why"
        return chunks, str(exc)
    for chunk in chunks:
        for issue in chunk.issues:
            assert issue.code and issue.message and " row " in issue.source_ref, issue
    return chunks, None


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-csv")


@pytest.fixture(scope="module")
def outbox(folder: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(folder / "outbox.sqlite")
    yield box
    box.close()


def fixture_case(name: str) -> tuple[dict[str, Any], bytes]:
    config = tomllib.loads((FIXTURES / name / "config.toml").read_text())
    return config["source"], next((FIXTURES / name).glob("input*")).read_bytes()


@st.composite
def damaged(draw: st.DrawFn, original: bytes) -> bytes:
    """A real export with bytes flipped, inserted, deleted or the file cut short."""
    data = bytearray(original[:20_000])
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut", "text"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(hostile_text()).encode("utf-8", "surrogateescape")[:2000]
    return bytes(data)


@pytest.mark.parametrize("case", CASES)
@given(data=st.data())
@FUZZ
def test_a_damaged_export_is_read_or_refused_with_a_reason(folder: Path, case: str, data: st.DataObject) -> None:
    Counter.add(f"csv {case}")
    settings, original = fixture_case(case)
    blob = data.draw(st.one_of(damaged(original), st.binary(max_size=400)))
    path = folder / f"{case}.csv"
    path.write_bytes(blob)
    read_all(source_of(settings, folder), path)


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


@given(
    hostile=st.lists(st.lists(hostile_text(), min_size=0, max_size=7), min_size=1, max_size=8),
    positions=st.lists(st.integers(0, 8), min_size=1, max_size=4),
)
@FUZZ
def test_well_formed_rows_next_to_hostile_ones_are_all_captured(
    folder: Path, outbox: Outbox, hostile: list[list[str]], positions: list[int]
) -> None:
    Counter.add("csv mapped (neighbours)")
    body = [[cell.replace("\x00", "") for cell in row] for row in hostile]  # NUL is refused file-wide by csv
    good = set()
    for n, at in enumerate(sorted(set(positions))):
        txn = f"GOOD-{n}"
        good.add(txn)
        body.insert(min(at, len(body)), [txn, "1", "2026-11-20T09:00:00", "SKU-1", "3"])
    path = folder / "mixed.csv"
    path.write_text(csv_text([HEADER, *body]), encoding="utf-8", errors="surrogateescape")
    chunks, refused = read_all(source_of(MAPPED, folder), path)
    if refused is not None:
        # only a file-wide problem may refuse it: bytes that are not UTF-8 (a lone surrogate) or an over-long field
        assert "not valid utf-8" in refused or "field larger" in refused, refused
        return
    captured = {m.pos_transaction_id for c in chunks for m in c.movements}
    assert good <= captured, f"valid rows lost: {good - captured}"
    sink = OutboxSink("drop", outbox, ITEMS, lambda _n: None)
    for chunk in chunks:  # what was read must also be storable: a hostile value never poisons the batch
        sink.submit(Batch(movements=chunk.movements, issues=chunk.issues, voids=chunk.voids))
    counted = sum(1 for c in chunks for _ in c.movements) + sum(len(c.issues) for c in chunks)
    assert counted >= len(good)
