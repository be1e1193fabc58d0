"""The outbox's SQLite file: connections, durability settings, transactions, integrity.

Invariants:
- Every connection runs in WAL mode with ``synchronous=FULL``: a committed transaction survives a
  power cut, not only a process crash. The one exception is delivery bookkeeping that is safe to
  lose (``write(durable=False)``: leases and acks): it commits with ``synchronous=NORMAL``, which a
  process crash cannot undo and a power cut can only roll back to an earlier consistent state; the
  events are then sent again and the WMS answers ``duplicate``. The next durable commit syncs them too.
- Writes go through ``Database.write()``, which opens ``BEGIN IMMEDIATE`` on the process's single
  writer connection, so two writers never interleave and a write never fails half-way on a lock
  upgrade. Other processes (the CLI) wait up to ``busy_timeout`` for the lock.
- Reads go through ``Database.read()`` on a separate pool and see a consistent snapshot.
- The file is checked with ``PRAGMA quick_check`` when opened; a damaged file raises
  ``DatabaseDamaged`` and is never silently recreated.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

BUSY_TIMEOUT_S = 30.0


class DatabaseDamaged(RuntimeError):
    """The outbox file failed its integrity check; it must be set aside, not overwritten."""


class StorageFull(RuntimeError):
    """The disk or the database is full: nothing was written, the caller must keep its input."""


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.close()


def _make_engine(path: Path, begin_sql: str, pool_size: int) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=3600,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
    )
    event.listen(engine, "connect", _on_connect)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine


class Database:
    """The outbox SQLite file with one writer connection and a small pool of readers."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database file at ``path``; schema is not touched here."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _make_engine(self.path, "BEGIN IMMEDIATE", pool_size=1)
        self._reader = _make_engine(self.path, "BEGIN", pool_size=4)
        self._write_lock = threading.Lock()

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """Run a write transaction (``BEGIN IMMEDIATE``); commits on exit, rolls back on error.

        ``durable=False`` skips the commit's fsync, for bookkeeping whose loss in a power cut only
        means sending events again (see the module invariants). A full disk surfaces as
        ``StorageFull`` so callers can keep their input and retry later.
        """
        with self._write_lock:
            if not durable:
                self._synchronous("NORMAL")
            try:
                with self._writer.begin() as conn:
                    yield conn
            except Exception as exc:
                if _is_full(exc):
                    raise StorageFull(str(exc)) from exc
                raise
            finally:
                if not durable:
                    self._synchronous("FULL")

    def _synchronous(self, level: str) -> None:
        """Set the writer's ``synchronous`` level (SQLite allows it only outside a transaction)."""
        raw = self._writer.raw_connection()
        try:
            raw.driver_connection.execute(f"PRAGMA synchronous={level}")  # type: ignore[union-attr]
        finally:
            raw.close()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Run a read-only transaction on a consistent snapshot."""
        with self._reader.begin() as conn:
            yield conn

    def user_version(self) -> int:
        """Return the schema version stored in the file (0 for a new file)."""
        with self.read() as conn:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())

    def quick_check(self) -> str:
        """Return ``"ok"`` or the first problem SQLite's ``quick_check`` finds."""
        try:
            with self.read() as conn:
                rows = conn.exec_driver_sql("PRAGMA quick_check").fetchall()
        except Exception as exc:  # a damaged header fails before the pragma can run
            return str(exc)
        return "ok" if rows and rows[0][0] == "ok" else "; ".join(str(r[0]) for r in rows[:5])

    def checkpoint(self) -> None:
        """Fold the WAL back into the main file (called on clean shutdown and after purges).

        Runs on the raw connection: outside any transaction, as SQLite requires.
        """
        with self._write_lock:
            raw = self._writer.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
            finally:
                raw.close()

    def close(self) -> None:
        """Release every connection."""
        self._writer.dispose()
        self._reader.dispose()


def _is_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left" in text
