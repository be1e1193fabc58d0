"""The ESC/POS decoder and receipt splitter, fed streams made by python-escpos (an independent implementation)."""

from __future__ import annotations

import contextlib
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_adapters.escpos import Code, Decoder, Image, Line, Notice, ReceiptSplitter, split_recording
from tests.support.serial_tap import ACCENTED, SAMPLE_CAPTURE, Sale, mixed_sales, receipt_bytes

SAMPLE = SAMPLE_CAPTURE.read_bytes()


def dummy():  # type: ignore[no-untyped-def]
    from escpos.printer import Dummy

    return Dummy()


def lines_of(data: bytes, encoding: str = "cp437") -> list[str]:
    decoder = Decoder(encoding)
    events = [*decoder.feed(data), *decoder.flush()]
    return [e.text for e in events if isinstance(e, Line)]


def feed_in_chunks(data: bytes, cuts: list[int]) -> list:  # type: ignore[type-arg]
    splitter = ReceiptSplitter(synced=True)
    out = []
    start = 0
    for cut in sorted(set(cuts)):
        out += splitter.feed(data[start:cut])
        start = cut
    out += splitter.feed(data[start:])
    return out + splitter.finish()


def test_the_sample_capture_is_exactly_its_twelve_receipts() -> None:
    receipts = split_recording(SAMPLE)
    assert len(receipts) == 12
    assert b"".join(r.raw for r in receipts) == SAMPLE
    assert all(r.complete and r.ended_by == "cut" for r in receipts)
    assert [r.codes for r in receipts] == [(Code("CODE128", f"{{BR3-{5000 + n:06d}".encode()),) for n in range(12)]
    first = receipts[0]
    assert first.lines[0].text == "ACME OUTDOOR #S001" and first.lines[0].align == "center"
    assert first.lines[0].spans[0].style.bold and first.lines[0].spans[0].style.height == 2
    assert "  3 x SKU-5001 @ 19.99     59.97" in [line.text for line in first.lines]
    assert first.start == 0 and first.end == len(first.raw) == receipts[1].start


@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=60))
@settings(max_examples=60, deadline=None)
def test_any_chunking_of_the_stream_gives_the_same_receipts(cuts: list[int]) -> None:
    whole = split_recording(SAMPLE)
    assert feed_in_chunks(SAMPLE, cuts) == whole


def test_images_barcodes_and_qr_payloads_are_skipped_byte_by_byte() -> None:
    sales = mixed_sales(12)
    data = b"".join(d for _, d in sales)
    whole = split_recording(data)
    assert len(whole) == 12
    # one byte per read: every command and payload straddles reads
    splitter = ReceiptSplitter(synced=True)
    bytewise = [r for i in range(len(data)) for r in splitter.feed(data[i : i + 1])] + splitter.finish()
    assert bytewise == whole
    for (sale, raw), receipt in zip(sales, whole, strict=True):
        assert receipt.raw == raw
        texts = [line.text for line in receipt.lines if line.text]  # a column image ends each stripe with LF
        assert texts[0] == "ACME OUTDOOR #S001" and texts[-1] == "Thank you!", texts
        assert f"REG R3  TXN {sale.txn}" in texts
        assert not any("\x1b" in t or "\x1d" in t for t in texts)
        assert Code("CODE128", f"{{B{sale.txn}".encode()) in receipt.codes
    kinds = {type(e).__name__ for e in Decoder().feed(data)}
    assert {"Image", "Code", "Cut", "Line"} <= kinds
    # the native QR code's data (with a line feed and an ESC inside) is a symbol, not text
    native = [c for r in whole for c in r.codes if c.symbology == "QR"]
    assert native and all(c.data.endswith(b"\nline two\x1bE") for c in native)


@pytest.mark.parametrize("impl", ["bitImageRaster", "graphics", "bitImageColumn"])
def test_each_image_format_prints_no_text(impl: str) -> None:
    data = receipt_bytes(Sale("R1-1", [("SKU-1001", 1, False)]), image=impl, barcode=False)
    decoder = Decoder()
    events = decoder.feed(data)
    assert [type(e) for e in events].count(Image) == 1
    assert next(e.text for e in events if isinstance(e, Line) and e.text) == "ACME OUTDOOR #S001"


@pytest.mark.parametrize("text", ACCENTED)
def test_code_page_switches_decode_to_the_original_text(text: str) -> None:
    p = dummy()
    with contextlib.redirect_stdout(io.StringIO()):
        p.text(text + "\n")
    assert b"\x1bt" in p.output[3:], "python-escpos should have switched code page"
    assert lines_of(p.output) == [text]


def test_power_on_code_page_and_reset() -> None:
    assert lines_of(b"Caf\xe9\n", "cp1252") == ["Café"]
    assert lines_of(b"\x1bt\x02Caf\x82\n\x1b@Caf\xe9\n", "cp1252") == ["Café", "Café"]


def test_international_character_set_and_unknown_code_page() -> None:
    assert lines_of(b"\x1bR\x03#12\n\x1bR\x00#12\n") == ["£12", "#12"]
    decoder = Decoder()
    events = decoder.feed(b"\x1bt\x01A\xb1B\n")
    assert [e.text for e in events if isinstance(e, Line)] == ["A\ufffdB"]
    assert any(isinstance(e, Notice) and "code page 1" in e.text for e in events)


def test_styles_alignment_and_commands_with_parameters() -> None:
    p = dummy()
    with contextlib.redirect_stdout(io.StringIO()):
        p.hw("INIT")
        p.cashdraw(2)
        p.set(font="b", custom_size=True, width=2, height=3, underline=2, invert=True, align="right")
        p.text("BIG\n")
        p.set_with_default()
        p.line_spacing(30)
        p.control("HT")
        p.text("tabbed\tcolumn\n")
        p.set(density=5)
        p.buzzer(2, 3)
        p.print_and_feed(2)
        p.text("after feed")
        p.cut(mode="PART")
    events = Decoder().feed(p.output)
    lines = [e for e in events if isinstance(e, Line)]
    assert [line.text for line in lines] == ["BIG", "tabbed\tcolumn", "after feed"]
    big = lines[0]
    assert big.align == "right"
    style = big.spans[0].style
    assert (style.width, style.height, style.underline, style.inverted, style.font) == (2, 3, 2, True, 1)
    assert lines[1].spans[0].style.width == 1
    assert events[-1].partial  # type: ignore[union-attr]


def test_barcodes_of_both_command_forms_are_recorded() -> None:
    p = dummy()
    with contextlib.redirect_stdout(io.StringIO()):
        p.barcode("4006381333931", "EAN13")  # GS k m d... NUL
        p.barcode("12345670", "EAN8", function_type="B")  # GS k m n d1...dn
        p.text("after\n")
    events = Decoder().feed(p.output)
    assert [e for e in events if isinstance(e, Code)] == [Code("EAN13", b"4006381333931"), Code("EAN8", b"12345670")]
    assert [e.text for e in events if isinstance(e, Line)] == ["after"]


def test_unknown_commands_are_noted_and_text_after_them_survives() -> None:
    events = Decoder().feed(b"\x1dQabc\n\x1b\x7fdef\n")
    notices = [e for e in events if isinstance(e, Notice)]
    assert [n.offset for n in notices] == [0, 6] and "GS Q" in notices[0].text
    assert [e.text for e in events if isinstance(e, Line)] == ["abc", "def"]


def test_real_time_status_queries_and_nv_images_print_nothing() -> None:
    nv = b"\x1cq\x01\x01\x00\x01\x00" + bytes(range(8))  # FS q: one 8x8-dot image whose data has LF, ESC...
    stream = (
        b"\x10\x04\x01\x10\x04\x07\x01\x10\x14\x01\x00\x01"
        + nv
        + b"\x1cp\x01\x00ok\n\x1b&\x03\x41\x41\x02"
        + bytes(6)
        + b"x\n"
    )
    assert lines_of(stream) == ["ok", "x"]


def test_splitter_sync_idle_and_interruptions() -> None:
    one = receipt_bytes(Sale("R1-1", [("SKU-1001", 1, False)]))
    two = receipt_bytes(Sale("R1-2", [("SKU-1002", 2, False)]))
    unsynced = ReceiptSplitter(synced=False)
    out = unsynced.feed(one[len(one) // 2 :] + two)
    assert [r.complete for r in out] == [False, True] and out[1].raw == two
    assert out[0].ended_by == "cut" and out[1].start == len(one) - len(one) // 2

    no_cut = one[: one.rindex(b"\x1bd")]
    idle = ReceiptSplitter(synced=True)
    assert idle.feed(no_cut) == []
    assert idle.idle(ends_receipt=False) == []
    (ended,) = idle.idle(ends_receipt=True)
    assert ended.complete and ended.ended_by == "idle gap" and ended.raw == no_cut

    quiet = ReceiptSplitter(synced=False)
    assert quiet.idle(ends_receipt=False) == [] and quiet.synced

    broken = ReceiptSplitter(synced=True)
    broken.feed(one[:200])
    (fragment,) = broken.interrupt("port closed")
    assert not fragment.complete and fragment.ended_by == "port closed" and not broken.synced
    (lost,) = broken.feed(two)
    assert not lost.complete  # after a break the start of what follows is unknown...
    (kept,) = broken.feed(two)
    assert kept.complete  # ...until a cut (or a quiet line) brings the splitter back in sync


def test_runaway_stream_without_cuts_is_cut_short() -> None:
    splitter = ReceiptSplitter(synced=True, max_bytes=1000)
    out = splitter.feed(b"line of text\n" * 100)
    assert [(r.complete, r.ended_by) for r in out] == [(False, "size limit")]
    assert "no cut after" in out[0].notes[0]


def test_prints_without_text_are_not_receipts() -> None:
    splitter = ReceiptSplitter(synced=True)
    assert splitter.feed(b"\x1b@\x10\x04\x01\x1bp\x00\x19\xfa\x1dV\x00   \n\x1dV\x01") == []


def test_code_page_state_travels_with_the_cut() -> None:
    splitter = ReceiptSplitter(synced=True)
    (receipt,) = splitter.feed(b"\x1bt\x10Caf\xe9\n\x1dV\x00\x1bt\x02")
    assert receipt.state == {"table": 16, "intl": 0}
    resumed = ReceiptSplitter(synced=True)
    resumed.decoder.restore(receipt.state)
    (again,) = resumed.feed(b"Caf\xe9\n\x1dV\x00")
    assert again.text == "Café"


def test_random_garbage_never_raises_and_keeps_offsets_exact() -> None:
    rng = random.Random(3)
    for _ in range(30):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
        splitter = ReceiptSplitter(synced=True, max_bytes=2000)
        out = []
        for i in range(0, len(data), 17):
            out += splitter.feed(data[i : i + 17])
        out += splitter.finish()
        assert splitter.offset == len(data)
        for receipt in out:
            assert data[receipt.start : receipt.end] == receipt.raw


@pytest.mark.parametrize(
    ("cut", "partial"),
    [(b"\x1bi", False), (b"\x1bm", True), (b"\x1dV\x00", False), (b"\x1dV1", True), (b"\x1dVA\x05", False)],
)
def test_every_cut_command_ends_a_receipt_after_its_last_byte(cut: bytes, partial: bool) -> None:
    p = dummy()
    with contextlib.redirect_stdout(io.StringIO()):
        p.text("one\n")
        p.cut(feed=False)  # GS V B n: python-escpos's cut without feed
    stream = p.output + b"two\n" + cut + b"three\n" + cut
    receipts = split_recording(stream)
    assert [r.text for r in receipts] == ["one", "two", "three"]
    assert receipts[0].raw.endswith(b"\x1dVB\x00") and receipts[1].raw == b"two\n" + cut
    assert Decoder().feed(cut)[-1].partial is partial  # type: ignore[union-attr]


def _kitchen_sink() -> bytes:
    p = dummy()
    with contextlib.redirect_stdout(io.StringIO()):
        p.hw("INIT")
        p.cashdraw(2)
        p.set(custom_size=True, width=2, height=2, invert=True)
        p.text("Straße ñ € Ελλάδα\n")
        p.set(density=5)
        p.buzzer(2, 3)
        p.barcode("4006381333931", "EAN13")
        p.cut(mode="PART")
    status = b"\x10\x04\x07\x01\x10\x04\x01\x10\x05\x02\x10\x14\x08" + bytes(7) + b"\x10\x14\x01\x00\x01"
    nv = b"\x1cq\x01\x01\x00\x01\x00" + bytes(range(8)) + b"\x1b&\x03\x41\x41\x02" + bytes(6)
    graphics = b"\x1d8L\x06\x00\x00\x00\x30\x70" + b"\n\x1b\x1d\n" + b"\x1d(k\x04\x001A2\x00"
    return b"".join(d for _, d in mixed_sales(4)) + bytes(p.output) + status + nv + graphics + b"tail\n\x1dV\x00"


KITCHEN_SINK = _kitchen_sink()


@given(st.lists(st.integers(min_value=0, max_value=len(KITCHEN_SINK)), max_size=80))
@settings(max_examples=80, deadline=None)
def test_any_chunking_of_every_command_family_gives_the_same_receipts(cuts: list[int]) -> None:
    whole = split_recording(KITCHEN_SINK)
    assert [r.text.splitlines()[-1] for r in whole][-1] == "tail"
    assert feed_in_chunks(KITCHEN_SINK, cuts) == whole


def test_every_command_family_fed_one_byte_at_a_time() -> None:
    whole = split_recording(KITCHEN_SINK)
    splitter = ReceiptSplitter(synced=True)
    bytewise = [r for i in range(len(KITCHEN_SINK)) for r in splitter.feed(KITCHEN_SINK[i : i + 1])]
    assert bytewise + splitter.finish() == whole
    assert splitter.offset == len(KITCHEN_SINK) == whole[-1].end
