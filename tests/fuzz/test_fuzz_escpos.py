"""Hostile ESC/POS streams through the decoder, the receipt splitter and every built-in receipt template.

Streams are random bytes, the real sample capture damaged byte by byte, random sequences of real
command prefixes with hostile arguments (huge declared image and data lengths), and valid receipts
with garbage between them. Properties: every printed line of the stream ends up in exactly one receipt or
fragment, each receipt is exactly its stretch of the stream (nothing lost, nothing doubled), whatever
the chunking; every receipt is parsed, skipped
or refused with a reason (never an internal error); valid receipts beside garbage still parse.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pos_adapters.escpos import Decoder, Line, ReceiptSplitter, split_recording
from pos_adapters.receipt_templates import Unparsed, builtin_names, load_builtin
from pos_adapters.serial_tap import SerialTapSettings, read_receipt
from tests.fuzz._support import FUZZ, Counter, bounded, context, hostile_text
from tests.support.serial_tap import SAMPLE_CAPTURE, Sale, receipt_bytes

SAMPLE = SAMPLE_CAPTURE.read_bytes()
TEMPLATES = {name: load_builtin(name) for name in builtin_names()}
SETTINGS = {name: SerialTapSettings(name="tap", port="/dev/null", template=name) for name in TEMPLATES}
CTX = context(Path())
PREFIXES = [
    b"\x1b",
    b"\x1d",
    b"\x1c",
    b"\x10",
    b"\x1b@",
    b"\x1bt",
    b"\x1bR",
    b"\x1d(k",
    b"\x1dv0",
    b"\x1b*",
    b"\x1dk",
    b"\x1dV",
    b"\x1b!",
    b"\x1b&",
    b"\x1d*",
    b"\x1c(",
    b"\x1dL",
    b"\x1b D",
    b"\x0a",
    b"\x0d",
]
GOOD = receipt_bytes(Sale("R3-GOOD", [("SKU-5001", 3, False), ("SKU-1001", 1, False)]))


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 30))):
        parts.append(draw(st.sampled_from(PREFIXES)))
        parts.append(draw(st.binary(max_size=6)))
        if draw(st.booleans()):
            parts.append(draw(hostile_text()).encode("cp437", "replace")[:200])
    return b"".join(parts)


@st.composite
def damaged_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(SAMPLE)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.integers(0, 2))
        if action == 0:
            data[at] = draw(st.integers(0, 255))
        elif action == 1:
            data[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(PREFIXES)))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def streams() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=600), damaged_sample(), commands())


def check_receipts(data: bytes, receipts: list) -> None:  # type: ignore[type-arg]
    end = 0
    for receipt in receipts:  # in order, not overlapping, each exactly its stretch of the stream
        assert receipt.raw == data[receipt.start : receipt.end] and receipt.start >= end
        end = receipt.end
    decoder = Decoder()
    printed = [e for e in [*decoder.feed(data), *decoder.flush()] if isinstance(e, Line) and e.text.strip()]
    kept = [line for r in receipts for line in r.lines if line.text.strip()]
    assert [x.text for x in kept] == [x.text for x in printed], "printed text was lost or doubled"
    for receipt in receipts:
        if not receipt.complete:
            continue
        for name, template in TEMPLATES.items():
            outcome = read_receipt(receipt, "tap receipt 1", template, SETTINGS[name], CTX)
            if outcome.reason is not None:
                assert not outcome.reason.startswith("internal error"), outcome.reason
                assert outcome.issues and all(i.code and i.message for i in outcome.issues)


@given(data=streams(), cuts=st.lists(st.integers(0, 70_000), max_size=12))
@FUZZ
def test_a_hostile_stream_is_split_without_losing_a_line_and_read_or_refused(data: bytes, cuts: list[int]) -> None:
    Counter.add("escpos stream + templates")
    with bounded("escpos split + templates"):
        whole = split_recording(data)
        splitter = ReceiptSplitter(synced=True)
        chunked = []
        start = 0
        for cut in sorted({c for c in cuts if c <= len(data)}):
            chunked += splitter.feed(data[start:cut])
            start = cut
        chunked += splitter.feed(data[start:]) + splitter.finish()
        assert chunked == whole, "the receipts depend on how the bytes arrived"
        check_receipts(data, whole)


@given(garbage=st.lists(streams(), min_size=1, max_size=3))
@FUZZ
def test_valid_receipts_beside_broken_print_jobs_still_parse(garbage: list[bytes]) -> None:
    """Garbage arrives as print jobs of its own, separated by idle gaps, as the live serial tap sees them."""
    Counter.add("escpos stream (neighbours)")
    splitter = ReceiptSplitter(synced=True)
    receipts = []
    with bounded("escpos split"):
        for job in [GOOD, *garbage, GOOD]:
            receipts += splitter.feed(job)
            receipts += splitter.idle(ends_receipt=True)
        receipts += splitter.finish()
    template = TEMPLATES["generic-58mm"]
    good = [r for r in receipts if r.raw == GOOD]
    assert len(good) == 2, "a valid receipt next to a broken print job was lost"
    for receipt in good:
        outcome = read_receipt(receipt, "tap receipt", template, SETTINGS["generic-58mm"], CTX)
        assert outcome.parsed is not None and len(outcome.movements) == 2, outcome.reason


LINE_SHAPES = [
    "REG R3  TXN {}",
    "{}",
    "  {} x SKU-5001 @ 19.99     59.97",
    "  3 x {} @ 19.99     59.97",
    "  3 x SKU-5001 @ {}     59.97",
    "VOID {}",
    "TOTAL {}",
    "*** RETURN ***",
    "2026-11-20 10:00",
]


@given(
    lines=st.lists(
        st.tuples(st.sampled_from(LINE_SHAPES), hostile_text()).map(lambda t: t[0].format(t[1])), max_size=12
    )
)
@FUZZ
def test_hostile_receipt_text_is_parsed_or_refused_with_a_reason(lines: list[str]) -> None:
    Counter.add("receipt templates (text)")
    for template in TEMPLATES.values():
        try:
            with bounded("receipt template"):
                template.parse(lines, terminal="R9")
        except Unparsed as exc:
            assert str(exc).strip()
