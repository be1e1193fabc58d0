"""Check an SQLite write-ahead log before SQLite opens it.

SQLite silently ignores a WAL whose header is invalid, and stops at the first frame whose checksum
fails, discarding every frame after it. Both would drop committed transactions without a word, so
the outbox checks the WAL first and treats such damage as a damaged outbox. A torn tail (the last,
uncommitted transaction cut short by a crash) is normal and not reported: nothing acknowledged was in it.

Format: https://www.sqlite.org/fileformat.html#the_write_ahead_log
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC_LE = 0x377F0682
MAGIC_BE = 0x377F0683
HEADER = 32
FRAME_HEADER = 24


def _checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    fmt = ">" if big_endian else "<"
    words = struct.unpack(f"{fmt}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_problem(db_path: Path) -> str | None:
    """Return why the WAL next to ``db_path`` would lose committed data, or None if it is sound."""
    wal = Path(f"{db_path}-wal")
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) == 0:
        return None
    if len(data) < HEADER:
        return f"{wal.name} is {len(data)} bytes, shorter than a WAL header"
    magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:HEADER])
    if magic not in (MAGIC_LE, MAGIC_BE):
        return f"{wal.name} does not start with the WAL magic number (0x{magic:08x})"
    big_endian = magic == MAGIC_BE
    s0, s1 = _checksum(data[:24], big_endian)
    if (s0, s1) != (c1, c2):
        return f"{wal.name} has a damaged header (checksum mismatch); SQLite would ignore every transaction in it"
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return f"{wal.name} names an impossible page size ({page_size})"
    frame = FRAME_HEADER + page_size
    offset, good = HEADER, 0
    while offset + frame <= len(data):
        head = data[offset : offset + FRAME_HEADER]
        _page, _commit, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack(">6I", head)
        if (f_salt1, f_salt2) != (salt1, salt2):
            break  # frames from an earlier generation of the WAL: not part of the current log
        s0, s1 = _checksum(head[:8], big_endian, s0, s1)
        s0, s1 = _checksum(data[offset + FRAME_HEADER : offset + frame], big_endian, s0, s1)
        if (s0, s1) != (f_c1, f_c2):
            later = _later_frames(data, offset + frame, frame, salt1, salt2)
            if later:
                return (
                    f"{wal.name}: frame {good + 1} is damaged and {later} later frame(s) of the current log would "
                    "be ignored by SQLite"
                )
            return None  # a torn tail: the last transaction never committed
        good += 1
        offset += frame
    return None


def _later_frames(data: bytes, offset: int, frame: int, salt1: int, salt2: int) -> int:
    count = 0
    while offset + frame <= len(data):
        f_salt1, f_salt2 = struct.unpack(">2I", data[offset + 8 : offset + 16])
        if (f_salt1, f_salt2) == (salt1, salt2):
            count += 1
        offset += frame
    return count
