from datetime import date
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.domain import CaptureIssue, Kind, Movement
from pos_adapters.base import SourceContext
from pos_adapters.csv_format import CsvLayout, MalformedFile, read_csv
from pos_adapters.lines import PosLine, normalize_line

CTX = SourceContext(
    store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=Path(), data_dir=Path(), location="S001"
)
COLUMNS = {
    "pos_transaction_id": "txn_id",
    "line_no": "line",
    "occurred_at": "timestamp",
    "terminal_id": "register",
    "kind": "type",
    "item": "item",
    "quantity": "qty",
    "unit": "uom",
    "unit_price": "price",
    "counterpart_location": "dest",
}
KINDS = {"SALE": "sale", "RETURN": "return", "XFER_OUT": "transfer_out", "XFER_IN": "transfer_in"}


def line(**overrides: object) -> PosLine:
    fields: dict[str, object] = {
        "pos_transaction_id": "T1",
        "line_no": "1",
        "occurred_at": "2026-11-20T23:30:00",
        "kind": "sale",
        "item": "SKU-1",
        "quantity": "2",
    }
    fields.update(overrides)
    return PosLine(**fields)  # type: ignore[arg-type]


def norm(pos_line: PosLine) -> Movement | CaptureIssue | None:
    return normalize_line(pos_line, CTX, source="src", source_ref="f.csv row 2")


def test_local_time_without_offset_and_business_day() -> None:
    m = norm(line())
    assert isinstance(m, Movement)
    assert m.occurred_at.utcoffset() is not None and m.occurred_at.isoformat() == "2026-11-20T23:30:00-06:00"
    assert m.business_day == date(2026, 11, 20)  # local date, not the UTC date (Nov 21)
    assert m.sku is None and m.raw_item_id == "SKU-1" and m.location == "S001"


def test_negative_sale_is_a_return_and_ids_follow_the_final_kind() -> None:
    m = norm(line(quantity="-3"))
    assert isinstance(m, Movement) and m.kind is Kind.RETURN and m.quantity == 3


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"quantity": "two"}, "BAD_NUMBER"),
        ({"quantity": "NaN"}, "BAD_NUMBER"),
        ({"occurred_at": "20/11/2026"}, "BAD_DATE"),
        ({"line_no": "x"}, "BAD_LINE_NO"),
        ({"kind": "LAYAWAY"}, "BAD_KIND"),
        ({"item": " "}, "MISSING_FIELD"),
        ({"pos_transaction_id": ""}, "MISSING_FIELD"),
        ({"kind": "transfer_out"}, "MISSING_COUNTERPART"),
        ({"kind": "transfer_out", "counterpart_location": "DC01", "quantity": "-1"}, "BAD_NUMBER"),
        ({"disposition": "lost"}, "BAD_DISPOSITION"),
        ({"quantity": "1e9"}, "BAD_NUMBER"),
    ],
)
def test_unusable_lines_become_issues_in_words(overrides: dict[str, object], code: str) -> None:
    issue = norm(line(**overrides))
    assert isinstance(issue, CaptureIssue) and issue.code == code and issue.message
    assert issue.source_ref == "f.csv row 2"


def test_voided_and_zero_lines_move_nothing() -> None:
    assert norm(line(voided=True)) is None
    assert norm(line(quantity="0")) is None


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode(encoding))
    return path


def read_all(path: Path, layout: CsvLayout | None = None) -> tuple[list[Movement], list[CaptureIssue]]:
    movements: list[Movement] = []
    issues: list[CaptureIssue] = []
    for chunk in read_csv(path, layout or CsvLayout(COLUMNS, KINDS), CTX, source="src", chunk_rows=2):
        movements += chunk.movements
        issues += chunk.issues
    return movements, issues


def test_reads_the_sample_layout_in_any_column_order_with_bom_and_crlf(tmp_path: Path) -> None:
    text = "\ufeffitem,qty,uom,price,dest,txn_id,line,timestamp,register,type\r\nSKU-1,2,CS,1.00,,T1,1,2026-11-20T09:00:00-06:00,R2,SALE\r\nSKU-2,1,EA,,DC01,T9,1,2026-11-20T18:40:00-06:00,R2,XFER_OUT\r\n"
    movements, issues = read_all(write(tmp_path, text))
    assert issues == []
    assert [
        (m.pos_transaction_id, m.kind, m.raw_item_id, m.original_quantity, m.original_unit, m.counterpart_location)
        for m in movements
    ] == [
        ("T1", Kind.SALE, "SKU-1", Decimal(2), "CS", None),
        ("T9", Kind.TRANSFER_OUT, "SKU-2", Decimal(1), "EA", "DC01"),
    ]
    assert movements[0].source_ref == "export.csv row 2"


def test_missing_column_makes_the_file_malformed_with_the_header_in_the_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "txn_id,line,timestamp,register,type,item,uom,price,dest\nT1,1,2026-11-20T09:00:00,R2,SALE,SKU-1,EA,1,\n",
    )
    with pytest.raises(MalformedFile, match=r"missing column 'qty' \(for quantity\); the header has: txn_id, line"):
        read_all(path)


def test_bad_rows_become_issues_and_neighbours_are_kept(tmp_path: Path) -> None:
    text = (
        "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\n"
        "T1,1,2026-11-20T09:00:00,R2,SALE,SKU-1,2,EA,1,\n"
        "T1,2,2026-11-20T09:00:00,R2,SALE,SKU-2,lots,EA,1,\n"
        "T1,3,2026-11-20T09:00:00,R2,LAYAWAY,SKU-3,1,EA,1,\n"
        "\n"
        "T2,1,2026-11-20T09:00:00,R2,RETURN,SKU-4,1,EA,1,\n"
    )
    movements, issues = read_all(write(tmp_path, text))
    assert [m.raw_item_id for m in movements] == ["SKU-1", "SKU-4"]
    assert [(i.code, i.source_ref, i.line_no) for i in issues] == [
        ("BAD_NUMBER", "export.csv row 3", 2),
        ("BAD_KIND", "export.csv row 4", 3),
    ]
    assert "quantity 'lots' is not a number" in issues[0].message
    assert issues[0].raw == "T1,2,2026-11-20T09:00:00,R2,SALE,SKU-2,lots,EA,1,"


def test_wrong_encoding_is_malformed_with_a_hint(tmp_path: Path) -> None:
    text = (
        "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\nT1,1,2026-11-20T09:00:00,R2,SALE,Café,1,EA,1,\n"
    )
    with pytest.raises(MalformedFile, match="cp1252"):
        read_all(write(tmp_path, text, "cp1252"))
    movements, _ = read_all(write(tmp_path, text, "cp1252"), CsvLayout(COLUMNS, KINDS, encoding="cp1252"))
    assert movements[0].raw_item_id == "Café"


def test_without_a_line_column_lines_are_numbered_within_each_transaction(tmp_path: Path) -> None:
    columns = {k: v for k, v in COLUMNS.items() if k != "line_no"}
    text = "txn_id,timestamp,register,type,item,qty,uom,price,dest\nA,2026-11-20T09:00:00,R,SALE,X,1,EA,,\nB,2026-11-20T09:00:00,R,SALE,X,1,EA,,\nA,2026-11-20T09:00:00,R,SALE,X,1,EA,,\n"
    movements, _ = read_all(write(tmp_path, text), CsvLayout(columns, KINDS))
    assert [(m.pos_transaction_id, m.line_no) for m in movements] == [("A", 1), ("B", 1), ("A", 2)]
    assert len({m.event_id for m in movements}) == 3


def test_empty_file_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedFile, match="empty"):
        read_all(write(tmp_path, ""))
