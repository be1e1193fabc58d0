"""The capture spool: every byte read from the POS port is on disk before anything decodes it.

Invariants:
- One writer (the port thread, ``SpoolWriter``) and one reader (the capture loop, ``SpoolReader``).
- A segment file is a sequence of frames: kind (1 byte), wall-clock time (float64), payload length
  (uint32), payload. Each frame is appended with one write, so a process killed mid-write leaves at
  most a torn frame at the end of its last segment; the reader skips it once a newer segment exists.
- Segment numbers only grow and are never reused. A port session starts a new segment with an OPEN
  frame; a full segment is continued in the next one without it.
- A ``Position`` (segment, frame offset, payload bytes of that frame already consumed) names one byte
  of the stream exactly. The capture cursor stores one, so a restart resumes at the first byte that
  was not captured yet; segments wholly before the committed position are deleted, nothing else is.
- Spooled bytes survive the agent being killed (they are in the operating system's cache once
  written), not necessarily a power cut: the receipt archive file, fsynced before a receipt is
  stored, is what survives that. A position beyond the end of a segment (its tail lost with the
  cache) simply continues with the next segment.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("possync.source.serial_tap")

DATA, IDLE, OPEN, CLOSE, GAP = b"D", b"I", b"O", b"C", b"G"
KINDS = {DATA, IDLE, OPEN, CLOSE, GAP}
HEADER = struct.Struct("<cdI")
SUFFIX = ".spool"
ROTATE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the spooled stream: a frame, and how many of its payload bytes come before it."""

    segment: int
    offset: int
    skip: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One spooled event. ``payload`` excludes the first ``skip`` bytes (consumed before a restart)."""

    kind: bytes
    at: float
    payload: bytes
    position: Position
    next: Position
    skip: int = 0


def segment_path(folder: Path, number: int) -> Path:
    """Return the file of segment ``number``."""
    return folder / f"{number:010d}{SUFFIX}"


def segment_numbers(folder: Path) -> list[int]:
    """Return the numbers of the segments present, in order."""
    try:
        names = [path.name for path in folder.iterdir()]
    except FileNotFoundError:
        return []
    return sorted(int(n[: -len(SUFFIX)]) for n in names if n.endswith(SUFFIX) and n[: -len(SUFFIX)].isdigit())


class SpoolWriter:
    """Appends frames; used by the port thread only. Every method raises ``OSError`` if the disk fails."""

    def __init__(self, folder: Path, first_segment: int, rotate_bytes: int = ROTATE_BYTES) -> None:
        """Write segments numbered from ``first_segment`` upwards into ``folder``."""
        self.folder = folder
        self.rotate_bytes = rotate_bytes
        self._next = first_segment
        self._fd: int | None = None
        self._size = 0
        self.session_segment: int | None = None

    def session(self, note: str) -> None:
        """Begin a port session: a new segment starting with an OPEN frame."""
        self._new_segment()
        self.session_segment = self._next - 1
        self._append(OPEN, note.encode("utf-8", "replace"))

    def data(self, payload: bytes) -> None:
        """Record bytes read from the port."""
        self._append(DATA, payload)

    def idle(self) -> None:
        """Record that the line has been quiet for the configured gap."""
        self._append(IDLE, b"")

    def close(self, reason: str) -> None:
        """End the port session (the port failed or the agent stops)."""
        self._append(CLOSE, reason.encode("utf-8", "replace"))

    def gap(self, note: str) -> None:
        """Record a hole: bytes were read here but could not be spooled."""
        self._append(GAP, note.encode("utf-8", "replace"))

    def shutdown(self) -> None:
        """Close the current segment file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _new_segment(self) -> None:
        self.shutdown()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = segment_path(self.folder, self._next)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
        self._size = os.fstat(self._fd).st_size
        self._next += 1

    def _append(self, kind: bytes, payload: bytes) -> None:
        if self._fd is None:
            self._new_segment()
        assert self._fd is not None
        record = HEADER.pack(kind, time.time(), len(payload)) + payload
        view = memoryview(record)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(record)
        if self._size >= self.rotate_bytes and kind == DATA:
            self._new_segment()


class SpoolReader:
    """Reads frames from a position onwards, following segments as the writer adds them."""

    def __init__(self, folder: Path, start: Position | None) -> None:
        """Start at ``start`` (a committed cursor position) or at the oldest segment present."""
        self.folder = folder
        if start is None:
            present = segment_numbers(folder)
            start = Position(present[0] if present else 1, 0, 0)
        self.position = start
        self._skip = start.skip

    def read(self) -> list[Frame]:
        """Return every complete frame available after the current position (raises OSError)."""
        frames: list[Frame] = []
        while True:
            segment = self.position.segment
            path = segment_path(self.folder, segment)
            later = self._next_segment(segment)  # looked up first: if it exists, this segment is final
            try:
                with open(path, "rb") as handle:
                    handle.seek(self.position.offset)
                    data = handle.read()
            except FileNotFoundError:
                if later is None:
                    return frames
                self._move_to(later)
                continue
            used = self._frames(data, segment, frames)
            self.position = Position(segment, self.position.offset + used, 0)
            if later is None:
                return frames
            if used < len(data):
                log.warning(
                    "spool segment %s ends with %d bytes of an incomplete record (the agent stopped while "
                    "writing it); they are skipped",
                    path.name,
                    len(data) - used,
                )
            self._move_to(later)

    def _frames(self, data: bytes, segment: int, out: list[Frame]) -> int:
        at = 0
        base = self.position.offset
        size = HEADER.size
        while len(data) - at >= size:
            kind, when, length = HEADER.unpack_from(data, at)
            end = at + size + length
            if kind not in KINDS:
                log.error("spool segment %d is damaged at byte %d; the rest of it is skipped", segment, base + at)
                return len(data)
            if end > len(data):
                break
            skip, self._skip = min(self._skip, length), 0
            out.append(
                Frame(
                    kind=kind,
                    at=when,
                    payload=data[at + size + skip : end],
                    position=Position(segment, base + at, 0),
                    next=Position(segment, base + end, 0),
                    skip=skip,
                )
            )
            at = end
        return at

    def _move_to(self, segment: int) -> None:
        self.position = Position(segment, 0, 0)
        self._skip = 0

    def _next_segment(self, segment: int) -> int | None:
        if segment_path(self.folder, segment + 1).exists():
            return segment + 1
        later = [n for n in segment_numbers(self.folder) if n > segment]
        return later[0] if later else None

    def delete_before(self, segment: int) -> None:
        """Delete segments wholly before ``segment`` (their bytes are captured)."""
        for number in segment_numbers(self.folder):
            if number >= segment:
                break
            segment_path(self.folder, number).unlink(missing_ok=True)
