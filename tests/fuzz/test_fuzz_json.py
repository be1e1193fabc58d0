"""Hostile POS transaction JSON: JSON lines files, single lines, and the http_ingest request body.

Every generated input is either parsed or refused with a reason (an issue with a code and message,
or a 4xx answer naming the problem); nothing raises, nothing hangs, and every line that is not a
transaction object is reported rather than dropped.
"""

from __future__ import annotations

import copy
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
from pos_adapters.http_ingest import HttpIngestSettings, HttpIngestSource
from pos_adapters.jsonl_format import parse_json_line, read_jsonl
from tests.fuzz._support import FUZZ, Counter, bounded, context, json_values

ITEMS = ItemMaster([ItemRecord(sku="SKU-1"), ItemRecord(sku="SKU-2")])
TXN_KEYS = ["transaction_id", "occurred_at", "kind", "business_day", "terminal_id", "lines", "voids", "currency"]
LINE_KEYS = ["item", "quantity", "unit", "unit_price", "line_no", "voided", "kind", "disposition", "location"]


def valid(n: int) -> dict[str, Any]:
    """A well-formed sale of SKU-1 (transaction T-<n>)."""
    return {
        "transaction_id": f"T-{n}",
        "terminal_id": "R1",
        "occurred_at": "2026-11-20T09:00:00-06:00",
        "kind": "sale",
        "lines": [{"line_no": 1, "item": "SKU-1", "quantity": "2", "unit_price": "9.99"}],
    }


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid transaction with one or more fields replaced, removed or retyped."""
    doc = valid(draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(1, 3))):
        target = (
            doc
            if draw(st.booleans())
            else doc["lines"][0]
            if isinstance(doc.get("lines"), list) and doc["lines"] and isinstance(doc["lines"][0], dict)
            else doc
        )
        key = draw(st.sampled_from(TXN_KEYS if target is doc else LINE_KEYS))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(json_values(8))
    if draw(st.booleans()):
        doc = {"transactions": [doc, *[valid(i) for i in range(draw(st.integers(0, 3)))]]}
    return doc


def documents() -> st.SearchStrategy[bytes]:
    """Raw bytes, arbitrary JSON, mutated transactions, deep nesting and broken encodings."""
    as_json = st.one_of(json_values(), mutated()).map(
        lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    return st.one_of(
        st.binary(max_size=300),
        as_json,
        as_json.map(lambda b: b[: len(b) // 2]),  # cut short
        st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, 200_000).map(lambda depth: b'{"transactions":' + b"[" * depth),
        mutated().map(lambda v: json.dumps(v).encode("utf-16")),
        mutated().map(lambda v: json.dumps(v).replace('"2"', "2e999999").encode()),
    )


def assert_reasoned(issues: list[Any]) -> None:
    for issue in issues:
        assert issue.code and issue.message and issue.source_ref, issue


@given(data=documents())
@FUZZ
def test_a_hostile_json_line_is_parsed_or_reported_never_raised(data: bytes) -> None:
    Counter.add("jsonl line")
    ctx = context(Path())
    with bounded("parse_json_line"):
        parsed = parse_json_line(data, ctx, source="fuzz", source_ref="fuzz line 1", first=True)
    assert_reasoned(parsed.issues)
    try:
        obj = json.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except (ValueError, RecursionError):
        assert parsed.issues and not parsed.movements, "a line that is not JSON must be reported"
        return
    if not isinstance(obj, dict):
        assert parsed.issues, "a line that is not a JSON object must be reported"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-jsonl")


@given(lines=st.lists(documents(), min_size=1, max_size=6), valid_at=st.lists(st.integers(0, 6), max_size=3))
@FUZZ
def test_valid_lines_between_hostile_ones_are_all_captured(
    folder: Path, lines: list[bytes], valid_at: list[int]
) -> None:
    Counter.add("jsonl file")
    good = {}
    body = list(lines)
    for n, position in enumerate(sorted(set(valid_at))):
        doc = valid(10_000_000 + n)
        good[doc["transaction_id"]] = doc
        body.insert(min(position, len(body)), json.dumps(doc).encode())
    path = folder / "mixed.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in body) + b"\n")
    with bounded("read_jsonl"):
        chunks = list(read_jsonl(path, context(folder), source="fuzz", chunk_rows=3, max_line_bytes=64 * 1024))
    movements = [m for c in chunks for m in c.movements]
    assert_reasoned([i for c in chunks for i in c.issues])
    captured = {m.pos_transaction_id for m in movements}
    assert set(good) <= captured, "a valid line next to hostile ones was lost"
    rows = [c.rows for c in chunks]
    assert rows == sorted(rows)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpIngestSource, Outbox]]:
    folder = tmp_path_factory.mktemp("fuzz-ingest")
    outbox = Outbox.open_file(folder / "outbox.sqlite")
    source = HttpIngestSource(HttpIngestSettings(name="pos-api", kind="http_ingest"), context(folder))
    sink = OutboxSink(source.name, outbox, ITEMS, lambda _n: None)
    source._sink = sink
    source._ready.set()
    yield source, outbox
    outbox.close()


@given(body=documents())
@FUZZ
def test_a_hostile_ingest_body_is_refused_with_its_reason_or_stored(
    ingest: tuple[HttpIngestSource, Outbox], body: bytes
) -> None:
    Counter.add("http_ingest body")
    source, outbox = ingest
    with bounded("http_ingest accept"):
        response = source.accept(body)
    answer = json.loads(bytes(response.body))
    assert response.status_code in (202, 400, 413, 422), (response.status_code, answer)
    if response.status_code == 202:
        stored = {m.event_id for t in answer["transactions"] for m in outbox.movements_of(t["transaction_id"])}
        assert set(answer["event_ids"]) <= stored
        assert answer["issues"] == 0
    else:
        assert answer["code"] and answer["message"]
        if response.status_code == 422:
            assert answer["errors"] and all(e["code"] and e["message"] for e in answer["errors"])


@given(doc=mutated())
@FUZZ
def test_a_strict_body_stores_all_or_nothing(ingest: tuple[HttpIngestSource, Outbox], doc: Any) -> None:
    Counter.add("http_ingest body (all or nothing)")
    source, outbox = ingest
    txns = doc.get("transactions", [doc])
    ids = [t.get("transaction_id") for t in txns if isinstance(t, dict) and isinstance(t.get("transaction_id"), str)]
    before = {i: len(outbox.movements_of(i)) for i in ids if i}
    body = json.dumps(copy.deepcopy(doc), ensure_ascii=False).encode("utf-8", "surrogatepass")
    with bounded("http_ingest accept"):
        response = source.accept(body)
    if response.status_code != 202:
        assert {i: len(outbox.movements_of(i)) for i in before} == before, "a refused body stored something"
