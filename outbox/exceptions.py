"""The exception queue: what waits for a person, and the two things a person can do about it.

Invariants:
- An exception names where the line came from (source and place in it), the POS transaction and
  line, the item as the POS wrote it, and the reason in words; it is never deleted while open.
- ``requeue`` sends a rejected movement to the WMS again; ``resolve`` closes an exception without
  delivering (the movement, if any, becomes ``discarded`` and is kept until retention).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from agent.domain import Movement
from outbox.db import Database
from outbox.schema import Category, ExceptionRow, ExceptionStatus, MovementRow, Status, table

M = table(MovementRow)
E = table(ExceptionRow)


@dataclass(frozen=True, slots=True)
class ExceptionView:
    """One exception as people see it."""

    id: int
    category: str
    status: str
    code: str
    message: str
    source: str
    source_ref: str
    pos_transaction_id: str | None
    line_no: int | None
    raw_item_id: str | None
    raw: str
    event_id: str | None
    occurrences: int
    created_at: float
    updated_at: float
    resolution: str | None


class ExceptionNotFound(LookupError):
    """No exception has that id."""


class ExceptionQueue:
    """Read and act on the exception queue stored in the outbox file."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        """Use the outbox's database."""
        self.db = db
        self.clock = clock

    def list(self, *, include_resolved: bool = False, limit: int = 500) -> list[ExceptionView]:
        """Return exceptions, oldest first; open ones only unless ``include_resolved``."""
        query = select(E).order_by(E.c.id).limit(limit)
        if not include_resolved:
            query = query.where(E.c.status == ExceptionStatus.OPEN)
        with self.db.read() as conn:
            return [_view(row) for row in conn.execute(query).mappings()]

    def get(self, exception_id: int) -> ExceptionView:
        """Return one exception or raise ``ExceptionNotFound``."""
        with self.db.read() as conn:
            row = conn.execute(select(E).where(E.c.id == exception_id)).mappings().first()
        if row is None:
            raise ExceptionNotFound(f"there is no exception {exception_id}")
        return _view(row)

    def held_movement(self, exception_id: int) -> Movement | None:
        """Return the movement an exception holds back, if it holds one."""
        view = self.get(exception_id)
        if view.event_id is None:
            return None
        with self.db.read() as conn:
            payload = conn.execute(select(M.c.payload).where(M.c.event_id == view.event_id)).scalar_one_or_none()
        return None if payload is None else Movement.from_json(payload)

    def requeue(self, exception_id: int, note: str) -> None:
        """Send a rejected movement to the WMS again and close its exception with ``note``."""
        now = self.clock()
        with self.db.write() as conn:
            view = _view_or_raise(conn, exception_id)
            if view.status != ExceptionStatus.OPEN:
                raise ValueError(f"exception {exception_id} is already {view.status}")
            if view.category != Category.REJECTED or view.event_id is None:
                raise ValueError("only a WMS rejection can be sent again as it is")
            conn.execute(
                update(M)
                .where(M.c.event_id == view.event_id, M.c.status.in_([Status.REJECTED, Status.DISCARDED]))
                .values(status=Status.READY, next_attempt_at=0.0, attempts=0)
            )
            _close(conn, exception_id, note, now)

    def resolve(self, exception_id: int, note: str) -> None:
        """Close an exception without delivering; its movement (if any) is discarded, not deleted."""
        now = self.clock()
        with self.db.write() as conn:
            view = _view_or_raise(conn, exception_id)
            if view.event_id is not None:
                conn.execute(
                    update(M)
                    .where(M.c.event_id == view.event_id, M.c.status.in_([Status.REJECTED, Status.HELD]))
                    .values(status=Status.DISCARDED)
                )
            _close(conn, exception_id, note, now)

    def touch(self, exception_id: int, message: str) -> None:
        """Record that a retry found the problem still there, with the current reason."""
        with self.db.write() as conn:
            conn.execute(
                update(E)
                .where(E.c.id == exception_id)
                .values(message=message, updated_at=self.clock(), occurrences=E.c.occurrences + 1)
            )


def _view_or_raise(conn: object, exception_id: int) -> ExceptionView:
    row = conn.execute(select(E).where(E.c.id == exception_id)).mappings().first()  # type: ignore[attr-defined]
    if row is None:
        raise ExceptionNotFound(f"there is no exception {exception_id}")
    return _view(row)


def _close(conn: object, exception_id: int, note: str, now: float) -> None:
    conn.execute(  # type: ignore[attr-defined]
        update(E)
        .where(E.c.id == exception_id)
        .values(status=ExceptionStatus.RESOLVED, resolved_at=now, updated_at=now, resolution=note)
    )


def _view(row: object) -> ExceptionView:
    r = dict(row)  # type: ignore[call-overload]
    return ExceptionView(
        id=r["id"],
        category=r["category"],
        status=r["status"],
        code=r["code"],
        message=r["message"],
        source=r["source"],
        source_ref=r["source_ref"],
        pos_transaction_id=r["pos_transaction_id"],
        line_no=r["line_no"],
        raw_item_id=r["raw_item_id"],
        raw=r["raw"],
        event_id=r["event_id"],
        occurrences=r["occurrences"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        resolution=r["resolution"],
    )
