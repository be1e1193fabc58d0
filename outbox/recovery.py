"""A damaged outbox file: set it aside untouched, and salvage what can still be read from the copy.

Invariants:
- The damaged files (database, WAL, shared memory) are moved, never deleted or rewritten, into
  ``<data_dir>/damaged/<timestamp>/`` with a ``REASON.txt`` beside them.
- Salvage reads the set-aside copy only: every movement not yet acknowledged by the WMS, and the
  sources' cursors. Sending a salvaged movement again is always safe (the WMS deduplicates on
  ``event_id``), so salvage errs on the side of re-sending.
- What could not be read is counted and reported, never hidden.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.domain import Movement

CHUNK = 500
GIVE_UP_AFTER_EMPTY_CHUNKS = 200


@dataclass
class Salvage:
    """What was read back from a damaged outbox."""

    movements: list[Movement] = field(default_factory=list)
    cursors: list[tuple[str, str, str]] = field(default_factory=list)
    unreadable_chunks: int = 0
    problems: list[str] = field(default_factory=list)


def set_aside(db_path: Path, reason: str) -> Path:
    """Move the outbox file and its WAL/SHM into a dated folder with the reason; return the folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = db_path.parent / "damaged" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(f"{db_path}{suffix}")
        if part.exists():
            part.replace(folder / part.name)
    (folder / "REASON.txt").write_text(
        f"possync set this outbox aside at {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"Reason: {reason}\n\n"
        "The agent started a new outbox and re-queued every movement it could read from this copy.\n"
        "Keep this folder until IT has checked it (docs/reliability.md, 'A damaged outbox').\n",
        encoding="utf-8",
    )
    return folder


def salvage(db_path: Path) -> Salvage:
    """Read unacknowledged movements and cursors from a (damaged) outbox copy, as far as possible."""
    result = Salvage()
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        result.problems.append(f"cannot open the damaged copy: {exc}")
        return result
    try:
        payloads = _readable(conn, "SELECT payload FROM movement WHERE status NOT IN ('acked', 'discarded')", result)
        for (payload,) in payloads:
            try:
                result.movements.append(Movement.from_json(payload))
            except (ValueError, KeyError, TypeError):
                result.unreadable_chunks += 1
        try:
            result.cursors = [
                (str(s), str(k), str(v)) for s, k, v in conn.execute("SELECT source, key, value FROM source_cursor")
            ]
        except sqlite3.Error as exc:
            result.problems.append(f"source cursors unreadable ({exc}); sources re-read their input (safe)")
    finally:
        conn.close()
    return result


def _readable(conn: sqlite3.Connection, query: str, result: Salvage) -> list[tuple[str]]:
    try:
        return list(conn.execute(query))
    except sqlite3.Error as exc:
        result.problems.append(f"the movement table is damaged ({exc}); reading it piece by piece")
    rows: list[tuple[str]] = []
    low, empty = 0, 0
    ranged = query.replace("WHERE", "WHERE seq > ? AND seq <= ? AND", 1)
    while empty < GIVE_UP_AFTER_EMPTY_CHUNKS:
        try:
            chunk = conn.execute(ranged, (low, low + CHUNK)).fetchall()
            empty = 0 if chunk else empty + 1
            rows.extend(chunk)
        except sqlite3.Error:
            result.unreadable_chunks += 1
            empty += 1
        low += CHUNK
    return rows
