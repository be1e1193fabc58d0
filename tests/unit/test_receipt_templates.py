"""Receipt templates: reading printed lines as a transaction, refusing what does not fit, checking templates."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from pos_adapters.escpos import split_recording
from pos_adapters.receipt_templates import (
    ParsedReceipt,
    SkippedReceipt,
    TemplateError,
    Unparsed,
    builtin_names,
    builtin_text,
    compile_spec,
    load_builtin,
    load_file,
    parse_number,
)
from tests.support.serial_tap import SAMPLE_CAPTURE

GENERIC = load_builtin("generic-58mm")

HEADER = ["ACME OUTDOOR #S001", "REG R3  TXN R3-009000", "2026-11-20 10:00"]


def parse(lines: list[str], template=GENERIC) -> ParsedReceipt:  # type: ignore[no-untyped-def]
    result = template.parse(lines)
    assert isinstance(result, ParsedReceipt)
    return result


def items(parsed: ParsedReceipt) -> list[tuple[int, str, Decimal, bool]]:
    return [(i.line_no, i.item, i.quantity, i.voided) for i in parsed.items]


def test_builtins_load_and_generic_58mm_reads_the_sample() -> None:
    assert {"generic-58mm", "upc-80mm"} <= set(builtin_names())
    for name in builtin_names():
        assert load_builtin(name).spec.description
    receipts = split_recording(SAMPLE_CAPTURE.read_bytes())
    parsed = [parse([line.text for line in r.lines]) for r in receipts]
    assert [p.transaction for p in parsed] == [f"R3-{5000 + n:06d}" for n in range(12)]
    assert [p.is_return for p in parsed].count(True) == 2
    first = parsed[0]
    assert first.terminal == "R3" and first.occurred_at == dt.datetime(2026, 11, 20, 10, 0)
    assert items(first) == [
        (1, "SKU-5001", Decimal(3), False),
        (2, "SKU-4002", Decimal(1), False),
        (3, "SKU-1003", Decimal(1), False),
        (4, "SKU-3001", Decimal(3), False),
    ]
    assert first.total == Decimal("299.72") and first.items[0].price == Decimal("19.99")


def test_voids_by_item_by_quantity_and_bare() -> None:
    lines = [
        *HEADER,
        "  1 x SKU-1001 @ 89.00     89.00",
        "  2 x SKU-2001 @ 14.50     29.00",
        "  1 x SKU-1001 @ 89.00     89.00",
        "VOID SKU-1001",  # the latest SKU-1001 line (line 3)
        "  3 x SKU-5001 @ 19.99     59.97",
        "VOID",  # the line just before (line 4)
        "  1 x SKU-3001 @ 7.25       7.25",
        "VOID 2 x SKU-2001",
        "TOTAL                      96.25",
    ]
    parsed = parse(lines)
    assert [(n, voided) for n, _, _, voided in items(parsed)] == [
        (1, False),
        (2, True),
        (3, True),
        (4, True),
        (5, False),
    ]


@pytest.mark.parametrize(
    ("void", "message"),
    [("VOID SKU-9999", "voids SKU-9999, but no such item line"), ("VOID 5 x SKU-1001", "voids 5 x SKU-1001")],
)
def test_a_void_that_matches_no_line_refuses_the_receipt(void: str, message: str) -> None:
    with pytest.raises(Unparsed, match=message):
        GENERIC.parse([*HEADER, "  1 x SKU-1001 @ 89.00     89.00", void, "TOTAL  0.00"])


def test_a_bare_void_before_any_item_refuses_the_receipt() -> None:
    with pytest.raises(Unparsed, match="the line before it"):
        GENERIC.parse([*HEADER, "VOID", "  1 x SKU-1001 @ 89.00     89.00", "TOTAL  89.00"])


def test_total_check_catches_a_missed_line() -> None:
    lines = [*HEADER, "  1 x SKU-1001 @ 89.00     89.00", "  1 x SKU-1002 @ 89.00     89,00", "TOTAL     178.00"]
    with pytest.raises(Unparsed, match=re.escape("add up to 89.00 but the receipt's total is 178.00")):
        GENERIC.parse(lines)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["REG R3", "2026-11-20 10:00", "  1 x SKU-1 @ 1.00  1.00", "TOTAL 1.00"], "transaction pattern"),
        (["TXN A1", "20.11.2026 10:00", "  1 x SKU-1 @ 1.00  1.00", "TOTAL 1.00"], "datetime pattern"),
        (["TXN A1", "2026-11-31 10:00", "  1 x SKU-1 @ 1.00  1.00", "TOTAL 1.00"], "does not match datetime_format"),
        (["TXN A1", "2026-11-20 10:00", "TOTAL 1.00"], "item pattern"),
        (["TXN A1", "2026-11-20 10:00", "  1 x SKU-1 @ 1.00  1.00"], "no line matches the template's total"),
        (["TXN A1", "2026-11-20 10:00", "*** VOID ***", "  1 x SKU-1 @ 1.00  1.00"], "refuse pattern"),
    ],
)
def test_what_does_not_fit_is_refused_in_words(lines: list[str], message: str) -> None:
    with pytest.raises(Unparsed, match=message):
        GENERIC.parse(lines)


def test_reports_are_skipped_and_returns_are_marked() -> None:
    assert GENERIC.parse(["X REPORT", "TXN 1"]) == SkippedReceipt("X REPORT")
    parsed = parse([*HEADER, "*** RETURN ***", "  1 x SKU-2001 @ 14.50    -14.50", "TOTAL     -14.50"])
    assert parsed.is_return and parsed.total == Decimal("-14.50")


def test_upc_80mm_composes_the_transaction_id_and_defaults_quantity_to_one() -> None:
    upc = load_builtin("upc-80mm")
    parsed = parse(
        [
            "Store 12   Reg 02   Trans 0042",
            "11/20/2026  02:04 PM",
            "0012345678905 TRAIL RUNNER 42 2 @ 89.00    178.00",
            "0098765432109 WOOL SOCK 3-PK         14.50",
            "VOID 0098765432109",
            "SUBTOTAL                            178.00",
        ],
        upc,
    )
    assert parsed.transaction == "02-0042" and parsed.occurred_at == dt.datetime(2026, 11, 20, 14, 4)
    assert items(parsed) == [(1, "0012345678905", Decimal(2), False), (2, "0098765432109", Decimal(1), True)]


def test_date_and_time_on_separate_lines_and_decimal_commas() -> None:
    template = compile_spec(
        {
            "transaction": r"Bon-Nr\.?\s*(\d+)",
            "transaction_id": "{date}-{transaction}",
            "date": r"^Datum:\s*(?P<date>\S+)",
            "time": r"^Zeit:\s*(?P<time>\S+)",
            "datetime_format": "%d.%m.%Y %H:%M",
            "item": r"^(?P<item>\S+)\s+(?P<quantity>\d+)\s*St\s+(?P<amount>[\d.,]+-?)\s*EUR$",
            "total": r"^SUMME\s+(?P<total>[\d.,]+-?)",
            "check_total": True,
            "decimal_separator": ",",
        },
        "test",
    )
    parsed = parse(
        [
            "Bon-Nr. 77",
            "Datum: 20.11.2026",
            "Zeit: 18:30",
            "4006381333931 2 St 1.234,50 EUR",
            "X1 1 St 5,50- EUR",
            "SUMME 1.229,00",
        ],
        template,
    )
    assert parsed.transaction == "2026-11-20-77" and parsed.occurred_at == dt.datetime(2026, 11, 20, 18, 30)
    assert [i.amount for i in parsed.items] == [Decimal("1234.50"), Decimal("-5.50")]


@pytest.mark.parametrize(
    ("text", "sep", "value"),
    [
        ("1,234.50", ".", "1234.50"),
        ("$ 12.00", ".", "12.00"),
        ("14.50-", ".", "-14.50"),
        ("(7.25)", ".", "-7.25"),
        ("-3", ".", "-3"),
        ("1.234,5", ",", "1234.5"),
        ("12,50 €", ",", "12.50"),
    ],
)
def test_printed_numbers(text: str, sep: str, value: str) -> None:
    assert parse_number(text, sep) == Decimal(value)


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="not a number"):
        parse_number("1.2.3")
    template = compile_spec(
        {"transaction": "T(\\d+)", "datetime": "(.+ .+)", "item": "^(?P<quantity>\\S+) (?P<item>SKU)$"}, "t"
    )
    with pytest.raises(Unparsed, match=re.escape("the quantity 'x.y' in the line 'x.y SKU' is not a number")):
        template.parse(["T1", "2026-11-20 10:00", "x.y SKU"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"transaction": "T", "datetime": "D", "item": "(?P<item>x"}, "item: not a valid regular expression"),
        ({"transaction": "T", "datetime": "D", "item": "(?P<item>x)"}, r"needs the named group\(s\) \(\?P<quantity>"),
        ({"transaction": "T", "item": "(?P<item>x)(?P<quantity>1)"}, "set 'datetime'"),
        (
            {"transaction": "T", "datetime": "D", "item": "(?P<item>x)(?P<quantity>1)", "check_total": True},
            "needs a 'total'",
        ),
        (
            {"transaction": "T", "datetime": "D", "item": "(?P<item>x)(?P<quantity>1)", "transaction_id": "{store}"},
            "unknown field",
        ),
        (
            {"transaction": "T", "datetime": "D", "item": "(?P<item>x)(?P<quantity>1)", "colour": "red"},
            "colour: unknown key",
        ),
        ({"datetime": "D", "item": "(?P<item>x)(?P<quantity>1)"}, "transaction: required key is missing"),
    ],
)
def test_template_mistakes_are_named(spec: dict[str, object], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        compile_spec(spec, "my template")


def test_template_files_report_where_the_problem_is(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot be read"):
        load_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("transaction = 'T\n")
    with pytest.raises(TemplateError, match=f"template file {bad}: not valid TOML"):
        load_file(bad)
    good = tmp_path / "mine.toml"
    good.write_text(builtin_text("generic-58mm").replace('name = "generic-58mm"', 'name = "mine"'))
    assert load_file(good).name == "mine"
    with pytest.raises(TemplateError, match="no built-in template 'nope'"):
        builtin_text("nope")


def test_the_configured_terminal_stands_in_when_the_receipt_prints_none() -> None:
    upc = load_builtin("upc-80mm")
    lines = ["Trans 0042", "11/20/2026  02:04 PM", "0012345678905 TRAIL RUNNER 42      89.00", "SUBTOTAL  89.00"]
    parsed = upc.parse(lines, terminal="07")
    assert isinstance(parsed, ParsedReceipt) and parsed.terminal == "07" and parsed.transaction == "07-0042"
    printed = upc.parse(["Reg 02 Trans 0042", *lines[1:]], terminal="07")
    assert isinstance(printed, ParsedReceipt) and printed.transaction == "02-0042"
