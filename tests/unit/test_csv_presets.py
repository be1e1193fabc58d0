"""CSV hardening: presets for real export layouts, money and decimal commas, zone names, settings rules."""

from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.domain import CaptureIssue, Kind, Movement
from pos_adapters.base import SourceContext
from pos_adapters.csv_format import CsvLayout, MalformedFile, read_csv
from pos_adapters.csv_presets import ZONE_NAMES, parse_number, zone_from_name
from pos_adapters.file_drop import FileDropSettings
from pos_adapters.lines import LineError

CTX = SourceContext(
    store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=Path(), data_dir=Path(), location="S001"
)


def read(
    tmp_path: Path, text: str, layout: CsvLayout, encoding: str = "utf-8"
) -> tuple[list[Movement], list[CaptureIssue]]:
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode(encoding))
    movements: list[Movement] = []
    issues: list[CaptureIssue] = []
    for chunk in read_csv(path, layout, CTX, source="src", chunk_rows=3):
        movements += chunk.movements
        issues += chunk.issues
    return movements, issues


@pytest.mark.parametrize(
    ("text", "decimal_comma", "money", "value"),
    [
        ("2.0", False, False, "2.0"),
        ("-1.47", False, False, "-1.47"),
        ("1,5", True, False, "1.5"),
        ("1.234,50", True, False, "1234.50"),
        ("1.500", True, False, "1500"),
        ("0,75", True, False, "0.75"),
        ("$1,234.00", False, True, "1234.00"),
        ("-$178.00", False, True, "-178.00"),
        ("($5.00)", False, True, "-5.00"),
        ("US$ 12.50", False, True, "12.50"),
        ("1.234,56 €", True, True, "1234.56"),
        ("12.50-", False, True, "-12.50"),
        ("\u22123", False, False, "-3"),
    ],
)
def test_numbers_as_exports_write_them(text: str, decimal_comma: bool, money: bool, value: str) -> None:
    assert parse_number(text, "amount", decimal_comma=decimal_comma, money=money) == Decimal(value)


def test_a_comma_without_decimal_comma_is_an_error_with_a_hint() -> None:
    with pytest.raises(LineError, match="decimal_comma = true"):
        parse_number("1,5", "quantity")


def test_every_zone_name_resolves_and_odd_ones_fall_back_to_the_store() -> None:
    store = ZoneInfo("America/Chicago")
    for name, zone in ZONE_NAMES.items():
        assert zone_from_name(name, store) == ZoneInfo(zone), name
    assert zone_from_name("(GMT-05:00) Eastern Time (US & Canada)", store) == ZoneInfo("America/New_York")
    assert zone_from_name("central time (us & canada)", store) == ZoneInfo("America/Chicago")
    assert zone_from_name("Europe/Berlin", store) == ZoneInfo("Europe/Berlin")
    assert zone_from_name("UTC-06:00", store) == timezone(-timedelta(hours=6))
    assert zone_from_name("+0530", store) == timezone(timedelta(hours=5, minutes=30))
    assert zone_from_name("Atlantis Standard Time", store) is store
    assert zone_from_name("", store) is store


def test_square_items_older_layout_without_zone_or_gtin(tmp_path: Path) -> None:
    text = (
        "Date,Time,Category,Item,Quantity,SKU,Gross Sales,Transaction ID,Device Name,Event Type\n"
        "11/20/2026,9:00:30 PM,Footwear,Trail Runner 42,1,SKU-1001,$89.00,T1,Front,Payment\n"
        "11/20/2026,9:00:31 PM,Footwear,Trail Runner 42,1,SKU-1001,$89.00,T1,Front,Payment\n"
        "11/20/2026,9:05:00 PM,Care,Shoe Cleaner,2,,$14.50,T2,Front,Refund\n"
        "11/20/2026,9:06:00 PM,Care,Shoe Cleaner,-1,SKU-3001,-$7.25,T3,Front,\n"
        "11/20/2026,9:07:00 PM,Care,Shoe Cleaner,one,SKU-3001,$7.25,T4,Front,Payment\n"
    )
    movements, issues = read(tmp_path, text, CsvLayout({}, preset="square-items"))
    assert [(m.pos_transaction_id, m.line_no, m.kind, m.raw_item_id, m.quantity, m.unit_price) for m in movements] == [
        ("T1", 1, Kind.SALE, "SKU-1001", 1, Decimal(89)),
        ("T1", 2, Kind.SALE, "SKU-1001", 1, Decimal(89)),  # the same item twice: two lines, both count
        ("T2", 1, Kind.RETURN, "Shoe Cleaner", 2, Decimal("7.25")),  # refund written positive
        ("T3", 1, Kind.RETURN, "SKU-3001", 1, Decimal("7.25")),  # negative quantity without event type
    ]
    assert movements[0].occurred_at.isoformat() == "2026-11-20T21:00:30-06:00"  # no zone column: the store's
    assert movements[0].terminal_id == "Front"
    assert [(i.code, i.source_ref) for i in issues] == [("BAD_NUMBER", "export.csv row 6")]


def test_square_items_zone_names_and_non_stock_rows(tmp_path: Path) -> None:
    text = (
        "Date,Time,Time Zone,Item,Qty,SKU,Gross Sales,Transaction ID,Event Type,Itemization Type\n"
        "2026-07-04,10:00:00,Eastern Time (US & Canada),Jacket,1.0,SKU-4002,$129.00,T1,Payment,Physical Item\n"
        "2026-07-04,10:00:05,Eastern Time (US & Canada),Tip,1.0,,$5.00,T1,Payment,Custom Amount\n"
        "2026-07-04,10:00:09,Eastern Time (US & Canada),Jacket,1.0,SKU-4002,$129.00,T1,Payment,Physical Item\n"
    )
    movements, issues = read(tmp_path, text, CsvLayout({}, preset="square-items"))
    assert [(m.line_no, m.occurred_at.isoformat()) for m in movements] == [
        (1, "2026-07-04T10:00:00-04:00"),
        (3, "2026-07-04T10:00:09-04:00"),  # row 2 moved nothing but kept its number
    ]
    assert issues == []


def test_a_preset_names_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(MalformedFile, match=r"no column 'Qty' or 'Quantity'; no column 'SKU' or 'GTIN'"):
        read(tmp_path, "Date,Time,Transaction ID\n2026-11-20,09:00:00,T1\n", CsvLayout({}, preset="square-items"))
    with pytest.raises(MalformedFile, match="Shopify orders export"):
        read(tmp_path, "Date,Time\n", CsvLayout({}, preset="shopify-orders"))


def test_cp1252_semicolons_decimal_commas_and_quoted_line_breaks(tmp_path: Path) -> None:
    columns = {"pos_transaction_id": "Beleg", "occurred_at": "Zeit", "item": "Artikel", "quantity": "Menge"}
    text = 'Notiz;Menge;Artikel;Zeit;Beleg\r\n"zwei\r\nZeilen; mit ""Zitat""";1,5;Müsli;2026-11-20T09:00:00;B1\r\n;2;Käse;2026-11-20T09:00:00;B1\r\n'
    movements, issues = read(
        tmp_path,
        text,
        CsvLayout(columns, default_kind="sale", encoding="cp1252", delimiter=";", decimal_comma=True),
        encoding="cp1252",
    )
    assert [(m.line_no, m.raw_item_id, m.quantity, m.source_ref) for m in movements] == [
        (1, "Müsli", Decimal("1.5"), "export.csv row 2"),
        (2, "Käse", 2, "export.csv row 3"),
    ]
    assert issues == []


def settings(**values: object) -> FileDropSettings:
    return FileDropSettings.model_validate({"name": "s", "kind": "file_drop", "path": ".", **values})


def test_settings_rules_for_presets_and_formats() -> None:
    assert settings(preset="square-items").file_pattern == "*.csv"
    assert settings(format="poslog").file_pattern == "*.xml"
    assert settings(format="jsonl", pattern="*.ndjson").file_pattern == "*.ndjson"
    with pytest.raises(ValidationError, match="preset 'sqaure' is not known"):
        settings(preset="sqaure")
    with pytest.raises(ValidationError, match="reads its own columns"):
        settings(preset="square-items", columns={"item": "SKU"})
    with pytest.raises(ValidationError, match="apply to CSV files only"):
        settings(format="poslog", columns={"item": "x"})
    with pytest.raises(ValidationError, match="or choose a preset: shopify-orders, square-items"):
        settings()
