"""Outbox ingest: movements/s enqueued durably (WAL, ``synchronous=FULL``), beside the limit and a peer.

- possync: ``Outbox.enqueue`` of ``per_commit`` movements per call (one call = one durable commit);
- limit: plain ``sqlite3`` inserting the same rows into the same schema (a fresh outbox file made by
  ``Outbox.open_file``), ``_INSERT_MOVEMENT`` with row tuples prebuilt by ``_movement_row``, WAL,
  ``synchronous=FULL``, one transaction per commit-size group;
- peer: persist-queue's ``SQLiteAckQueue``, one ``put`` per movement. It refuses ``auto_commit=False``
  (it warns and turns it back on), so every put is its own durable commit: the only configuration
  of it that is durable at every commit boundary.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import warnings
from pathlib import Path
from typing import cast

from bench.common import movements
from outbox.queue import _INSERT_MOVEMENT, Outbox, _movement_row

FULL = 2  # PRAGMA synchronous value of FULL


def possync_rate(n: int, per_commit: int) -> float:
    """Return movements/s of ``Outbox.enqueue`` with ``per_commit`` movements per call."""
    items = movements(n, f"E{per_commit}")
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox.open_file(Path(tmp) / "outbox.sqlite")
        started = time.perf_counter()
        for i in range(0, n, per_commit):
            box.enqueue(items[i : i + per_commit], source="bench")
        elapsed = time.perf_counter() - started
        box.close()
    return n / elapsed


def raw_rate(n: int, per_commit: int) -> float:
    """Return movements/s of plain sqlite3 inserts of the same prebuilt rows into the outbox schema."""
    now = time.time()
    rows = [_movement_row(m, now) for m in movements(n, f"R{per_commit}")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.sqlite"
        Outbox.open_file(path).close()  # the migrations create the schema, indexes included
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
        started = time.perf_counter()
        for i in range(0, n, per_commit):
            conn.execute("BEGIN")
            conn.executemany(_INSERT_MOVEMENT, rows[i : i + per_commit])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return n / elapsed


def persist_queue_rate(n: int, per_commit: int) -> float:
    """Return movements/s of ``SQLiteAckQueue.put``, one put (and, necessarily, one commit) per movement."""
    import persistqueue

    items = movements(n, f"P{per_commit}")
    with tempfile.TemporaryDirectory() as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a configuration it silently changes would be a different peer
            queue = persistqueue.SQLiteAckQueue(tmp, auto_commit=True, multithreading=False)
        putter = cast(sqlite3.Connection, queue._putter)  # no API for it; the queue's own connection
        putter.execute("PRAGMA synchronous=FULL")
        assert putter.execute("PRAGMA synchronous").fetchone()[0] == FULL
        started = time.perf_counter()
        for i in range(0, n, per_commit):
            for item in items[i : i + per_commit]:  # one POS transaction (or file chunk)
                queue.put(item)
        elapsed = time.perf_counter() - started
        assert queue.qsize() == n
        queue.close()
    return n / elapsed
