"""The POS transaction JSON parser (shared by jsonl files, the journal and http_ingest) and JSON lines."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.domain import Kind, make_event_id
from pos_adapters.base import SourceContext
from pos_adapters.jsonl_format import read_jsonl
from pos_adapters.transactions import TransactionsInvalid, parse_transactions

CTX = SourceContext(
    store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=Path(), data_dir=Path(), location="S001"
)
DESIGN_EXAMPLE = {
    "transaction_id": "R2-020262",
    "terminal_id": "R2",
    "occurred_at": "2026-11-20T09:02:08-06:00",
    "business_day": "2026-11-20",
    "kind": "sale",
    "counterpart_location": None,
    "lines": [
        {"line_no": 1, "item": "0012345678905", "quantity": "2", "unit": "EA", "unit_price": "89.00", "voided": False}
    ],
}


def parse(obj: object, strict: bool = False):  # type: ignore[no-untyped-def]
    return parse_transactions(obj, CTX, source="push", source_ref="req 1", strict=strict)


def test_the_design_example_is_one_sale_line() -> None:
    result = parse(DESIGN_EXAMPLE)
    (m,) = result.movements
    assert m.event_id == make_event_id("S001", "R2-020262", 1, Kind.SALE)
    assert (m.kind, m.raw_item_id, m.quantity, m.unit, m.unit_price, m.terminal_id) == (
        Kind.SALE,
        "0012345678905",
        2,
        "EA",
        Decimal("89.00"),
        "R2",
    )
    assert m.business_day == date(2026, 11, 20) and m.source_ref == "req 1"
    assert result.issues == [] and result.errors == [] and result.transactions == 1


def test_a_batch_with_every_kind_numbers_voided_lines_and_defaults() -> None:
    base = {"occurred_at": "2026-11-20T10:00:00", "terminal_id": "R1"}
    doc = {
        "transactions": [
            {**base, "transaction_id": "A", "kind": "sale", "lines": [{"item": "SKU-1", "quantity": 1.5}]},
            {**base, "transaction_id": "B", "kind": "return", "lines": [{"item": 12345678905, "quantity": "1"}]},
            {
                **base,
                "transaction_id": "C",
                "kind": "transfer_out",
                "counterpart_location": "DC01",
                "lines": [
                    {"line_no": 7, "item": "SKU-2", "quantity": 3, "voided": True},
                    {"line_no": 8, "item": "SKU-2", "quantity": 3},
                ],
            },
            {**base, "transaction_id": "D", "kind": "adjustment", "lines": [{"item": "SKU-3", "quantity": "-2"}]},
            {**base, "transaction_id": "E", "kind": "post_void", "voids": {"transaction_id": "A", "terminal_id": "R1"}},
            {
                **base,
                "transaction_id": "F",
                "kind": "transfer_in",
                "lines": [{"item": "SKU-4", "quantity": "1", "counterpart_location": "DC02"}],
            },
        ],
        "extra": "ignored",
    }
    result = parse(doc)
    got = [
        (m.pos_transaction_id, m.line_no, m.kind, m.raw_item_id, m.quantity, m.counterpart_location)
        for m in result.movements
    ]
    assert got == [
        ("A", 1, Kind.SALE, "SKU-1", Decimal("1.5"), None),
        ("B", 1, Kind.RETURN, "12345678905", 1, None),
        ("C", 8, Kind.TRANSFER_OUT, "SKU-2", 3, "DC01"),
        ("D", 1, Kind.ADJUSTMENT, "SKU-3", -2, None),
        ("F", 1, Kind.TRANSFER_IN, "SKU-4", 1, "DC02"),
    ]
    assert str(result.movements[0].quantity) == "1.5"  # a JSON float is read through its text
    (void,) = result.voids
    assert (void.pos_transaction_id, void.voided_transaction_id, void.voided_terminal_id) == ("E", "A", "R1")
    assert void.voided_business_day is None and void.business_day == date(2026, 11, 20)
    assert result.issues == [] and result.transactions == 6


def test_value_errors_name_their_path_and_spare_the_rest() -> None:
    doc = {
        "transactions": [
            DESIGN_EXAMPLE,
            {**DESIGN_EXAMPLE, "transaction_id": "X", "kind": "layaway"},
            {
                **DESIGN_EXAMPLE,
                "transaction_id": "Y",
                "lines": [
                    {"line_no": 1, "item": "SKU-1", "quantity": "two"},
                    {"line_no": 2, "item": "", "quantity": "1"},
                    {"line_no": 3, "item": "SKU-1", "quantity": "1"},
                    {"line_no": 3, "item": "SKU-2", "quantity": "1"},
                    {"line_no": 4, "item": "SKU-1", "quantity": "1", "voided": "no"},
                ],
            },
            {**DESIGN_EXAMPLE, "transaction_id": "Z", "occurred_at": "yesterday"},
            {**DESIGN_EXAMPLE, "transaction_id": "Q", "kind": "post_void", "lines": []},
        ]
    }
    result = parse(doc)
    assert [m.pos_transaction_id for m in result.movements] == ["R2-020262", "Y"]
    assert [(e.path, e.code) for e in result.errors] == [
        ("transactions[1].kind", "BAD_KIND"),
        ("transactions[2].lines[0].quantity", "BAD_NUMBER"),
        ("transactions[2].lines[1].item", "MISSING_FIELD"),
        ("transactions[2].lines[3].line_no", "DUPLICATE_LINE"),
        ("transactions[2].lines[4].voided", "BAD_VALUE"),
        ("transactions[3].occurred_at", "BAD_DATE"),
        ("transactions[4].voids", "MISSING_FIELD"),
    ]
    first = result.issues[1]
    assert first.message == "transactions[2].lines[0].quantity: quantity 'two' is not a number"
    assert first.pos_transaction_id == "Y" and first.line_no == 1 and first.raw_item_id == "SKU-1"
    assert json.loads(first.raw) == {"line_no": 1, "item": "SKU-1", "quantity": "two"}
    assert len({i.issue_id for i in result.issues}) == len(result.issues)
    with pytest.raises(TransactionsInvalid) as caught:
        parse(doc, strict=True)
    assert [e.path for e in caught.value.errors] == [e.path for e in result.errors]
    assert "transactions[1].kind: kind 'layaway' is not one of" in str(caught.value)


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ([1, 2], ""),
        ({"transactions": {"a": 1}}, "transactions"),
        ({"transactions": [DESIGN_EXAMPLE, "x"]}, "transactions[1]"),
        ({**DESIGN_EXAMPLE, "lines": "none"}, "lines"),
        ({**DESIGN_EXAMPLE, "lines": [1]}, "lines[0]"),
        ({**DESIGN_EXAMPLE, "kind": "post_void", "voids": "T1"}, "voids"),
    ],
)
def test_a_document_of_the_wrong_shape_is_refused_whole(doc: object, path: str) -> None:
    with pytest.raises(TransactionsInvalid) as caught:
        parse(doc)
    assert [e.path for e in caught.value.errors] == [path]


def test_post_void_rules() -> None:
    bad = {**DESIGN_EXAMPLE, "kind": "post_void", "voids": {"transaction_id": "R2-020262"}}
    assert [e.code for e in parse(bad).errors] == ["BAD_SHAPE", "BAD_VOID"]  # has lines; voids itself
    ok = {
        "transaction_id": "PV9",
        "occurred_at": "2026-11-21T08:00:00Z",
        "kind": "POST_VOID",
        "voids": {"transaction_id": "R2-020262", "business_day": "2026-11-20"},
    }
    (void,) = parse(ok).voids
    assert void.voided_business_day == date(2026, 11, 20) and void.voided_terminal_id is None
    assert void.business_day == date(2026, 11, 21)  # the local date of 08:00 UTC in Chicago


def test_jsonl_file_keeps_going_past_bad_lines(tmp_path: Path) -> None:
    lines = [
        "\ufeff" + json.dumps(DESIGN_EXAMPLE),
        "",
        "{not json",
        json.dumps({**DESIGN_EXAMPLE, "transaction_id": "B", "lines": [{"item": "SKU-1", "quantity": "x"}]}),
        json.dumps(
            {
                "transaction_id": "PV",
                "occurred_at": "2026-11-20T12:00:00",
                "kind": "post_void",
                "voids": {"transaction_id": "R2-020262"},
            }
        ),
        "[1]",
    ]
    path = tmp_path / "sales.jsonl"
    path.write_bytes(
        ("\r\n".join(lines) + "\r\n").encode() + b'{"transaction_id": "\xff"}\n' + b"{" + b" " * 5000 + b"}\n"
    )
    chunks = list(read_jsonl(path, CTX, source="j", chunk_rows=2, max_line_bytes=4096))
    movements = [m for c in chunks for m in c.movements]
    issues = [i for c in chunks for i in c.issues]
    voids = [v for c in chunks for v in c.voids]
    assert [m.pos_transaction_id for m in movements] == ["R2-020262"]
    assert movements[0].source_ref == "sales.jsonl line 1"
    assert [(i.code, i.source_ref) for i in issues] == [
        ("BAD_JSON", "sales.jsonl line 3"),
        ("BAD_NUMBER", "sales.jsonl line 4"),
        ("BAD_SHAPE", "sales.jsonl line 6"),
        ("BAD_ENCODING", "sales.jsonl line 7"),
        ("LINE_TOO_LONG", "sales.jsonl line 8"),
    ]
    assert issues[0].raw == "{not json"
    assert [v.source_ref for v in voids] == ["sales.jsonl line 5"]
    assert [c.rows for c in chunks] == sorted(c.rows for c in chunks) and chunks[-1].rows == 8
