"""``possync receipts replay|templates``: what IT sees while writing a receipt template."""

from __future__ import annotations

import gzip
import json
import tomllib
from pathlib import Path

import pytest

from agent.cli import main
from pos_adapters.receipt_templates import builtin_text
from tests.support.helpers import write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "serial_tap"
SAMPLE = FIXTURES / "sample-capture" / "input.escpos"
MIXED = FIXTURES / "mixed-receipts" / "input.escpos"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["receipts", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_replaying_the_sample_reads_every_receipt(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "replay", str(SAMPLE), "--template", "generic-58mm")
    assert code == 0
    assert out.splitlines()[-1] == (
        "12 receipt(s) read with template generic-58mm: 12 parsed (29 movement(s)), 0 skipped, 0 not parsed, 0 cut short"
    )
    assert "receipt 5 (bytes 1758-2112, ended by cut): RETURN" in out
    assert "  line 1   return      1 x SKU-2001 @ 14.50" in out


def test_a_receipt_that_is_not_read_shows_its_text_and_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "replay", str(MIXED), "--template", "generic-58mm")
    assert code == 1
    assert "receipt 13 (bytes 12796-13133, ended by cut): NOT READ: the item lines add up to 89.00" in out
    assert "  | TOTAL                      98.00" in out and "  [CODE128: {BR3-008000]" in out
    assert "line 2   NOT CAPTURED 9999999 x SKU-3001 @ 0.00: quantity 9999999 is implausibly large" in out
    assert "receipt 14 (bytes 13133-13167, ended by cut): skipped, not a sale ('X REPORT')" in out
    assert "voided      1 x SKU-1003 @ 89.00" in out


def test_json_output_and_archived_receipts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "000001.escpos.gz"
    archive.write_bytes(gzip.compress(SAMPLE.read_bytes()[:478]))
    code, out, _ = run(capsys, "replay", str(archive), "--template", "generic-58mm", "--json")
    assert code == 0
    (record,) = json.loads(out)
    assert record["status"] == "parsed" and record["transaction"] == "R3-005000" and record["kind"] == "sale"
    assert [line["item"] for line in record["lines"]] == ["SKU-5001", "SKU-4002", "SKU-1003", "SKU-3001"]
    assert record["movements"][0]["source_ref"] == "replay capture 000001 line 1"
    assert record["codes"] == [{"symbology": "CODE128", "data": "{BR3-005000"}]


def test_a_template_of_your_own_and_its_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(builtin_text("generic-58mm").replace("check_total = true", "check_total = false"))
    code, out, _ = run(capsys, "replay", str(MIXED), "--template-file", str(mine), "--text")
    assert code == 1  # the implausible quantity is still not captured
    assert "0 not parsed" in out and "  | 123 Main St, Springfield" in out
    mine.write_text("transaction = 'TXN (\\S+'\n")
    code, _, err = run(capsys, "replay", str(SAMPLE), "--template-file", str(mine))
    assert code == 2 and f"template file {mine}: transaction: not a valid regular expression" in err
    code, _, err = run(capsys, "replay", str(SAMPLE))
    assert code == 2 and "say which template" in err
    code, _, err = run(capsys, "replay", str(tmp_path / "nothing.escpos"), "--template", "generic-58mm")
    assert code == 1 and "cannot read" in err


def test_the_configured_source_gives_store_time_zone_and_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = '[[sources]]\nname = "lane-1"\nkind = "serial_tap"\nport = "/dev/ttyUSB0"\ntemplate = "generic-58mm"\n'
    config = write_config(tmp_path, "http://127.0.0.1:9", sources=source)
    code, out, _ = run(capsys, "replay", str(SAMPLE), "--config", str(config), "--json")
    assert code == 0
    movement = json.loads(out)[0]["movements"][0]
    assert movement["store_id"] == "S001" and movement["occurred_at"] == "2026-11-20T10:00:00-06:00"
    assert movement["source_ref"] == "lane-1 capture 000001 line 1"
    code, _, err = run(capsys, "replay", str(SAMPLE), "--config", str(config), "--source", "lane-9")
    assert code == 2 and "no serial_tap source named 'lane-9' (serial_tap sources in" in err and "lane-1" in err


def test_templates_are_listed_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "templates")
    assert code == 0 and out.startswith("generic-58mm") and "upc-80mm" in out
    code, out, _ = run(capsys, "templates", "upc-80mm")
    assert code == 0 and tomllib.loads(out)["name"] == "upc-80mm"
    code, _, err = run(capsys, "templates", "nope")
    assert code == 2 and "no built-in template 'nope'" in err
