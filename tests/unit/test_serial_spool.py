"""The capture spool: frames on disk, positions that resume exactly, segments that rotate and go away."""

from __future__ import annotations

from pathlib import Path

from pos_adapters.serial_spool import (
    CLOSE,
    DATA,
    HEADER,
    IDLE,
    OPEN,
    Position,
    SpoolReader,
    SpoolWriter,
    segment_numbers,
    segment_path,
)


def kinds_and_payloads(frames) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    return [(f.kind, f.payload) for f in frames]


def test_frames_come_back_in_order_and_the_reader_follows_the_writer(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, first_segment=1)
    reader = SpoolReader(tmp_path, None)
    assert reader.read() == []
    writer.session("opened /dev/ttyUSB0")
    writer.data(b"abc")
    first = reader.read()
    assert kinds_and_payloads(first) == [(OPEN, b"opened /dev/ttyUSB0"), (DATA, b"abc")]
    writer.idle()
    writer.data(b"\x1dV\x00")
    writer.close("the agent stopped")
    later = reader.read()
    assert kinds_and_payloads(later) == [(IDLE, b""), (DATA, b"\x1dV\x00"), (CLOSE, b"the agent stopped")]
    assert later[0].position == first[-1].next and later[0].at >= first[0].at


def test_a_position_inside_a_frame_resumes_at_that_byte(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, first_segment=5)
    writer.session("s")
    writer.data(b"0123456789")
    writer.data(b"abc")
    frames = SpoolReader(tmp_path, None).read()
    data = frames[1]
    resumed = SpoolReader(tmp_path, Position(data.position.segment, data.position.offset, 4)).read()
    assert kinds_and_payloads(resumed) == [(DATA, b"456789"), (DATA, b"abc")]
    assert resumed[0].skip == 4 and resumed[1].skip == 0


def test_sessions_and_rotation_make_new_segments_that_the_reader_crosses(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, first_segment=1, rotate_bytes=64)
    writer.session("one")
    for n in range(10):
        writer.data(bytes([65 + n]) * 20)
    writer.session("two")
    writer.data(b"z")
    assert len(segment_numbers(tmp_path)) > 3
    frames = SpoolReader(tmp_path, None).read()
    assert (
        b"".join(f.payload for f in frames if f.kind == DATA)
        == b"".join(bytes([65 + n]) * 20 for n in range(10)) + b"z"
    )
    assert [f.payload for f in frames if f.kind == OPEN] == [b"one", b"two"]


def test_a_torn_record_waits_in_the_live_segment_and_is_skipped_in_a_dead_one(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, first_segment=1)
    writer.session("s")
    writer.data(b"complete")
    path = segment_path(tmp_path, 1)
    with open(path, "ab") as handle:  # a write cut off by a kill
        handle.write(HEADER.pack(DATA, 0.0, 100) + b"only part")
    reader = SpoolReader(tmp_path, None)
    assert kinds_and_payloads(reader.read()) == [(OPEN, b"s"), (DATA, b"complete")]
    assert reader.read() == []  # the live segment may still be completed: wait
    restarted = SpoolWriter(tmp_path, first_segment=2)
    restarted.session("after restart")
    assert kinds_and_payloads(reader.read()) == [(OPEN, b"after restart")]


def test_damaged_segment_is_skipped_without_looping(tmp_path: Path) -> None:
    segment_path(tmp_path, 1).write_bytes(b"garbage that is no frame at all")
    SpoolWriter(tmp_path, first_segment=2).session("s")
    assert kinds_and_payloads(SpoolReader(tmp_path, None).read()) == [(OPEN, b"s")]


def test_delete_before_keeps_the_current_segment(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, first_segment=1)
    for n in range(4):
        writer.session(str(n))
    reader = SpoolReader(tmp_path, None)
    reader.read()
    reader.delete_before(3)
    assert segment_numbers(tmp_path) == [3, 4]


def test_a_missing_resume_segment_continues_with_the_next_one(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, first_segment=7)
    writer.session("s")
    writer.data(b"x")
    frames = SpoolReader(tmp_path, Position(3, 999, 2)).read()
    assert kinds_and_payloads(frames) == [(OPEN, b"s"), (DATA, b"x")]
