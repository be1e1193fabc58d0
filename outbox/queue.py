"""The durable outbox: enqueue, ordered claim with leases, per-event results, retention.

Invariants:
- ``enqueue`` stores movements, their capture issues and the source's cursor in one transaction;
  a movement whose ``event_id`` is already stored is not stored again (and its issues are not
  repeated), so a re-read source changes nothing.
- ``claim`` returns deliverable movements in capture order (``seq``) and leases them; a lease that
  expires (the agent died mid-delivery) makes them deliverable again; ``recover_leases`` does that
  for every lease at start-up. Leases and acks commit without an fsync (``write(durable=False)``):
  a power cut can only undo them, which makes the events deliverable again and the WMS answers
  ``duplicate``; captured movements and rejections are always committed durably.
- A movement leaves the queue only as ``acked`` (the WMS has it), ``rejected`` (kept, with the WMS's
  reason, in the exception queue) or ``discarded`` (an operator decided); unacked movements are
  never purged.
- A wall clock that jumped backwards cannot park a movement: a ``next_attempt_at`` further ahead
  than the longest possible backoff counts as due.
- Post-voids are stored in the transaction of the batch that carries them, once per voided
  transaction. In that same transaction the reversing movements of every stored line of the voided
  transaction are added, and lines of an already-voided transaction are reversed as they arrive;
  so whichever comes first, the original or its post-void, the net is the same, and two sources
  writing at once cannot slip between the check and the insert (one writer, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from agent.domain import CaptureIssue, Cursor, Movement, PostVoid
from outbox.db import Database, DatabaseDamaged, StorageFull
from outbox.migrations import CURRENT_VERSION, SchemaMismatch, SchemaTooNew, migrate
from outbox.schema import (
    Category,
    CursorRow,
    ExceptionRow,
    ExceptionStatus,
    MovementRow,
    PostVoidRow,
    Status,
    table,
)
from outbox.wal import wal_problem

log = logging.getLogger("possync.outbox")

M = table(MovementRow)
E = table(ExceptionRow)
C = table(CursorRow)
V = table(PostVoidRow)

Reverse = Callable[[PostVoid, list[Movement]], tuple[list[Movement], list[CaptureIssue]]]
"""Builds the (mapped) reversing movements of a post-void's original lines, plus their issues."""

_CHUNK = 500  # SQLite bound-parameter friendly chunk for IN (...) lists


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What one ``enqueue`` stored."""

    new: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    issues_new: int = 0
    reversals: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Counts:
    """Queue sizes and ages for status displays."""

    ready: int
    in_flight: int
    acked: int
    held: int
    rejected: int
    discarded: int
    exceptions_open: int
    oldest_pending_enqueued_at: float | None
    last_acked_at: float | None

    @property
    def pending(self) -> int:
        """Movements that will still be delivered without anyone acting (ready + in flight)."""
        return self.ready + self.in_flight


def category_for(code: str, *, holds_movement: bool = True) -> Category:
    """Map an issue code to the exception category shown to people."""
    if code.startswith("VOID_"):
        return Category.POST_VOID
    if code == "OUTBOX_DAMAGED":
        return Category.STORAGE
    if not holds_movement:
        return Category.CAPTURE
    if code == "UNKNOWN_ITEM":
        return Category.UNKNOWN_ITEM
    if code == "UNKNOWN_UNIT":
        return Category.UNKNOWN_UNIT
    return Category.CAPTURE


def void_waiting_key(void: PostVoid) -> str:
    """Return the exception key of a post-void waiting for its original transaction."""
    return f"void-waiting:{void.store_id}:{void.pos_transaction_id}"


@dataclass(frozen=True, slots=True)
class _Request:
    """One ``enqueue`` call, waiting to be committed (possibly together with others)."""

    movements: Sequence[Movement]
    cursor: Cursor | None
    issues: Sequence[CaptureIssue]
    source: str
    voids: Sequence[PostVoid]
    reverse: Reverse | None


@dataclass(slots=True)
class _Pending:
    request: _Request
    done: threading.Event = field(default_factory=threading.Event)
    result: EnqueueResult | None = None
    error: BaseException | None = None


class _GroupCommit:
    """Group commit: enqueues that wait for the writer are committed together, in one transaction.

    Under concurrent capture (POS pushes, several sources) one fsync then covers many requests instead
    of one each. Each caller still returns only after its own request is durable, with its own result.
    If a grouped transaction fails, every request of the group is tried again on its own, so one bad
    request cannot fail its neighbours.
    """

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()

    def run(self, request: _Request) -> EnqueueResult:
        pending = _Pending(request)
        with self._queue_lock:
            self._queue.append(pending)
        with self._leader:
            if not pending.done.is_set():
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _commit(self, group: list[_Pending]) -> None:
        outbox = self._outbox
        try:
            now = outbox.clock()
            with outbox.db.write() as conn:
                results = [outbox._enqueue_in(conn, p.request, now) for p in group]
            for p, result in zip(group, results, strict=True):
                p.result = result
        except Exception as exc:
            if len(group) == 1 or isinstance(exc, StorageFull):
                for p in group:
                    p.error = exc
            else:
                for p in group:
                    try:
                        with outbox.db.write() as conn:
                            p.result = outbox._enqueue_in(conn, p.request, outbox.clock())
                    except Exception as single:
                        p.error = single
        finally:
            for p in group:
                p.done.set()


class Outbox:
    """The agent's durable queue of movements between POS capture and WMS delivery."""

    def __init__(
        self,
        db: Database,
        *,
        lease_s: float = 120.0,
        max_backoff_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wrap an open database; call ``open()`` (or use ``Outbox.open_file``) before use."""
        self.db = db
        self._group = _GroupCommit(self)
        self.lease_s = lease_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock

    @classmethod
    def open_file(cls, path: Any, **kwargs: Any) -> Outbox:
        """Open the outbox file: check integrity, migrate, and recover expired leases."""
        db = Database(path)
        outbox = cls(db, **kwargs)
        outbox.open()
        return outbox

    @classmethod
    def attach(cls, path: Any, **kwargs: Any) -> Outbox:
        """Open the outbox of a (possibly running) agent from another process, changing nothing.

        No migration and no lease recovery happen here: those belong to the agent that owns it.
        """
        db = Database(path)
        found = db.user_version()
        if found != CURRENT_VERSION:
            db.close()
            if found > CURRENT_VERSION:
                raise SchemaTooNew(f"{path} was written by a newer possync (schema {found}); use that version")
            raise SchemaMismatch(
                f"{path} has schema {found}, this possync expects {CURRENT_VERSION}; "
                "start the agent once (possync run) to migrate it"
            )
        return cls(db, **kwargs)

    def open(self) -> None:
        """Check the file, bring the schema up to date and release leases left by a crash."""
        wal = wal_problem(self.db.path)
        if wal is not None:
            self.db.close()
            raise DatabaseDamaged(f"{self.db.path}: {wal}")
        problem = self.db.quick_check()
        if problem != "ok":
            self.db.close()
            raise DatabaseDamaged(f"{self.db.path} failed its integrity check: {problem}")
        migrate(self.db)
        self.recover_leases()

    def close(self) -> None:
        """Checkpoint the WAL (best effort; the WAL is durable either way) and release connections."""
        try:
            self.db.checkpoint()
        except Exception as exc:
            log.warning("WAL checkpoint at close failed (harmless, retried at next start): %s", exc)
        finally:
            self.db.close()

    # -- capture side ------------------------------------------------------------------------

    def enqueue(
        self,
        movements: Sequence[Movement],
        cursor: Cursor | None = None,
        issues: Sequence[CaptureIssue] = (),
        *,
        source: str = "",
        voids: Sequence[PostVoid] = (),
        reverse: Reverse | None = None,
    ) -> EnqueueResult:
        """Store movements, issues, post-voids and the cursor in one transaction, deduplicating on event_id.

        Unmapped movements (``sku is None``) are stored as ``held``; their issue (whose
        ``event_id`` names them) opens an exception until the item master can map them.
        With ``reverse``, post-voids are stored and reversals are added for every voided line
        stored so far (see the module invariants); without it, ``voids`` must be empty.
        """
        if voids and reverse is None:
            raise ValueError("post-voids need a reverse function to build their reversing movements")
        return self._group.run(_Request(movements, cursor, issues, source, voids, reverse))

    def _enqueue_in(self, conn: Any, request: _Request, now: float) -> EnqueueResult:
        """Store one enqueue request inside an open write transaction."""
        unique: dict[str, Movement] = {}
        for movement in request.movements:
            unique.setdefault(movement.event_id, movement)
        new, issues_new = self._insert(conn, list(unique.values()), request.issues, now)
        existing = set(unique) - {m.event_id for m in new}
        reversals: list[Movement] = []
        if request.reverse is not None:
            reversals = self._apply_voids(conn, request.voids, new, request.reverse, request.source, now)
        if request.cursor is not None:
            self._save_cursor(conn, request.source, request.cursor, now)
        return EnqueueResult(
            new=[m.event_id for m in new],
            duplicates=[eid for eid in unique if eid in existing],
            held=[m.event_id for m in (*new, *reversals) if not m.is_mapped],
            issues_new=issues_new,
            reversals=[m.event_id for m in reversals],
        )

    def _insert(
        self, conn: Any, movements: list[Movement], issues: Sequence[CaptureIssue], now: float
    ) -> tuple[list[Movement], int]:
        existing = self._existing_ids(conn, [m.event_id for m in movements])
        new = [m for m in movements if m.event_id not in existing]
        if new:
            # The capture hot path: one prepared statement on the driver, no per-row SQL building.
            driver(conn).executemany(_INSERT_MOVEMENT, [_movement_row(m, now) for m in new])
        new_ids = {m.event_id for m in new}
        issue_rows = [_issue_row(issue, now) for issue in issues if issue.event_id is None or issue.event_id in new_ids]
        issues_new = 0
        if issue_rows:
            result = conn.execute(insert(E).prefix_with("OR IGNORE"), issue_rows)
            issues_new = max(result.rowcount, 0)
        return new, issues_new

    def _apply_voids(
        self,
        conn: Any,
        voids: Sequence[PostVoid],
        new: Sequence[Movement],
        reverse: Reverse,
        source: str,
        now: float,
    ) -> list[Movement]:
        """Store post-voids and add the reversals now due; return the reversals stored."""
        due: dict[str, PostVoid] = {}
        for void in voids:
            row = conn.execute(
                select(V.c.pos_transaction_id, V.c.payload).where(
                    V.c.voided_transaction_id == void.voided_transaction_id
                )
            ).first()
            if row is None:
                conn.execute(
                    insert(V).values(
                        voided_transaction_id=void.voided_transaction_id,
                        pos_transaction_id=void.pos_transaction_id,
                        source=void.source or source,
                        payload=json.dumps(void.to_wire()),
                        created_at=now,
                        reversed=0,
                    )
                )
                due[void.voided_transaction_id] = void
            elif row.pos_transaction_id == void.pos_transaction_id:
                due[void.voided_transaction_id] = PostVoid.from_wire(json.loads(row.payload))
            else:
                self._void_issue(
                    conn,
                    void,
                    "VOID_DUPLICATE",
                    f"post-void {void.pos_transaction_id} voids transaction {void.voided_transaction_id}, which "
                    f"post-void {row.pos_transaction_id} already voided; this second post-void changes nothing",
                    f"void-duplicate:{void.store_id}:{void.pos_transaction_id}",
                    now,
                )
        arrived = sorted({m.pos_transaction_id for m in new} - set(due))
        for i in range(0, len(arrived), _CHUNK):
            rows = conn.execute(
                select(V.c.voided_transaction_id, V.c.payload).where(
                    V.c.voided_transaction_id.in_(arrived[i : i + _CHUNK])
                )
            ).all()
            for row in rows:
                due[row.voided_transaction_id] = PostVoid.from_wire(json.loads(row.payload))
        stored: list[Movement] = []
        for target, void in due.items():
            payloads = conn.execute(
                select(M.c.payload).where(M.c.pos_transaction_id == target).order_by(M.c.seq)
            ).scalars()
            originals = [m for m in (Movement.from_json(p) for p in payloads) if void.matches(m)]
            if not originals:
                self._void_issue(
                    conn,
                    void,
                    "VOID_WAITING",
                    f"post-void {void.pos_transaction_id} voids transaction {void.voided_transaction_id}"
                    f"{_void_target_words(void)}, which possync has not captured yet; its lines will be reversed "
                    "automatically as soon as they arrive. If that transaction will never reach possync, resolve "
                    "this exception.",
                    void_waiting_key(void),
                    now,
                )
                continue
            reversals, issues = reverse(void, originals)
            added, _ = self._insert(conn, reversals, issues, now)
            stored.extend(added)
            if added:
                conn.execute(
                    update(V).where(V.c.voided_transaction_id == target).values(reversed=V.c.reversed + len(added))
                )
            conn.execute(
                update(E)
                .where(E.c.issue_key == void_waiting_key(void), E.c.status == ExceptionStatus.OPEN)
                .values(
                    status=ExceptionStatus.RESOLVED,
                    resolved_at=now,
                    updated_at=now,
                    resolution=f"transaction {target} arrived; its lines were reversed",
                )
            )
        return stored

    @staticmethod
    def _void_issue(conn: Any, void: PostVoid, code: str, message: str, key: str, now: float) -> None:
        issue = CaptureIssue(
            issue_id=key,
            source=void.source,
            source_ref=void.source_ref,
            code=code,
            message=message,
            pos_transaction_id=void.pos_transaction_id,
        )
        conn.execute(insert(E).prefix_with("OR IGNORE"), [_issue_row(issue, now)])

    def movements_of(self, pos_transaction_id: str) -> list[Movement]:
        """Return the stored movements of one POS transaction, in capture order (uses its index)."""
        with self.db.read() as conn:
            payloads = conn.execute(
                select(M.c.payload).where(M.c.pos_transaction_id == pos_transaction_id).order_by(M.c.seq)
            ).scalars()
            return [Movement.from_json(p) for p in payloads]

    def save_cursor(self, source: str, cursor: Cursor) -> None:
        """Store a cursor on its own (a batch that produced no movements still moves it)."""
        with self.db.write() as conn:
            self._save_cursor(conn, source, cursor, self.clock())

    def cursor(self, source: str, key: str) -> dict[str, Any] | None:
        """Return the stored cursor value of ``source`` under ``key``, or None."""
        with self.db.read() as conn:
            value = conn.execute(select(C.c.value).where(C.c.source == source, C.c.key == key)).scalar_one_or_none()
        return None if value is None else dict(json.loads(value))

    @staticmethod
    def _save_cursor(conn: Any, source: str, cursor: Cursor, now: float) -> None:
        conn.execute(
            insert(C)
            .prefix_with("OR REPLACE")
            .values(source=source, key=cursor.key, value=json.dumps(dict(cursor.value)), updated_at=now)
        )

    @staticmethod
    def _existing_ids(conn: Any, event_ids: list[str]) -> set[str]:
        found: set[str] = set()
        raw = driver(conn)
        for i in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT event_id FROM movement WHERE event_id IN ({marks})"  # noqa: S608 (placeholders only)
            found.update(r[0] for r in raw.execute(query, chunk))
        return found

    # -- delivery side -----------------------------------------------------------------------

    def claim(self, limit: int) -> list[Movement]:
        """Lease up to ``limit`` due movements, oldest first, and return them in order."""
        now = self.clock()
        with self.db.write(durable=False) as conn:  # a lease lost in a power cut is recovered at start-up
            raw = driver(conn)
            rows = raw.execute(_CLAIM, (Status.READY.value, now, now + self.max_backoff_s, limit)).fetchall()
            if not rows:
                return []
            marks = ",".join("?" * len(rows))
            raw.execute(_LEASE.format(marks), (Status.IN_FLIGHT.value, now + self.lease_s, *(seq for seq, _ in rows)))
        return [Movement.from_json(payload) for _, payload in rows]

    def ack(self, results: Iterable[tuple[str, str]], positions: Mapping[str, int | None] | None = None) -> int:
        """Mark events delivered; ``results`` pairs each event_id with ``accepted``/``duplicate``.

        ``positions`` gives where the WMS applied each event (compared with a snapshot's version by
        the stock view); an event without one counts as included in any later snapshot.
        """
        where = positions or {}
        now = self.clock()
        acked = Status.ACKED.value
        params = [(acked, now, res, where.get(eid), eid, acked) for eid, res in results]
        if not params:
            return 0
        with self.db.write(durable=False) as conn:  # an ack lost in a power cut means a resend, answered duplicate
            cursor = driver(conn).executemany(_ACK, params)
        return max(cursor.rowcount, 0)

    def reject(self, event_id: str, code: str, message: str) -> None:
        """Park an event the WMS refused, with the WMS's code and message, as an open exception."""
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute(select(M.c.payload).where(M.c.event_id == event_id)).scalar_one_or_none()
            if row is None:
                return
            movement = Movement.from_json(row)
            conn.execute(
                update(M)
                .where(M.c.event_id == event_id)
                .values(status=Status.REJECTED, lease_until=None, last_error=f"{code}: {message}")
            )
            self._open_exception(
                conn,
                movement,
                category=Category.REJECTED,
                code=code,
                message=message,
                now=now,
            )

    def retry_each_later(self, event_ids: Sequence[str], delay_for: Callable[[int], float], error: str) -> None:
        """Put events back to ready, each due after ``delay_for(its attempts so far)`` seconds.

        For events the WMS asked to retry while it took the rest of their batch: each backs off on
        its own count, so one event that keeps failing is not resent every second for days.
        """
        if not event_ids:
            return
        now = self.clock()
        with self.db.write() as conn:
            raw = driver(conn)
            params = []
            for i in range(0, len(event_ids), _CHUNK):
                chunk = list(event_ids[i : i + _CHUNK])
                marks = ",".join("?" * len(chunk))
                query = f"SELECT event_id, attempts FROM movement WHERE event_id IN ({marks})"  # noqa: S608
                for event_id, attempts in raw.execute(query, chunk):
                    params.append((now + max(delay_for(max(int(attempts), 1)), 0.0), error[:500], event_id))
            raw.executemany(_RETRY, [(Status.READY.value, *p, Status.IN_FLIGHT.value) for p in params])

    def retry_later(self, event_ids: Sequence[str], delay_s: float, error: str) -> None:
        """Put events back to ready, due after ``delay_s`` seconds, remembering the error."""
        if not event_ids:
            return
        due = self.clock() + max(delay_s, 0.0)
        with self.db.write() as conn:
            for i in range(0, len(event_ids), _CHUNK):
                conn.execute(
                    update(M)
                    .where(M.c.event_id.in_(event_ids[i : i + _CHUNK]), M.c.status == Status.IN_FLIGHT)
                    .values(
                        status=Status.READY,
                        next_attempt_at=due,
                        lease_until=None,
                        last_error=error[:500],
                    )
                )

    def release(self, event_ids: Sequence[str]) -> None:
        """Return leased events to ready without counting an attempt (delivery paused)."""
        if not event_ids:
            return
        with self.db.write() as conn:
            for i in range(0, len(event_ids), _CHUNK):
                conn.execute(
                    update(M)
                    .where(M.c.event_id.in_(event_ids[i : i + _CHUNK]), M.c.status == Status.IN_FLIGHT)
                    .values(status=Status.READY, lease_until=None, attempts=M.c.attempts - 1)
                )

    def recover_leases(self, *, expired_only: bool = False) -> int:
        """Make leased movements deliverable again (all of them at start-up, or expired ones)."""
        condition = M.c.status == Status.IN_FLIGHT
        if expired_only:
            condition = condition & (M.c.lease_until < self.clock())
        with self.db.write() as conn:
            result = conn.execute(update(M).where(condition).values(status=Status.READY, lease_until=None))
        return max(result.rowcount, 0)

    def next_due_in(self) -> float | None:
        """Seconds until the earliest ready movement is due (0 if one is due now; None if none)."""
        now = self.clock()
        with self.db.read() as conn:
            earliest = conn.execute(
                select(func.min(M.c.next_attempt_at)).where(M.c.status == Status.READY)
            ).scalar_one_or_none()
        if earliest is None:
            return None
        wait = float(earliest) - now
        return 0.0 if wait <= 0 or wait > self.max_backoff_s else wait

    # -- exceptions' movements ---------------------------------------------------------------

    def held(self, limit: int = 10_000) -> list[Movement]:
        """Return movements parked because their item or unit is not in the item master."""
        with self.db.read() as conn:
            payloads = conn.execute(
                select(M.c.payload).where(M.c.status == Status.HELD).order_by(M.c.seq).limit(limit)
            ).scalars()
            return [Movement.from_json(p) for p in payloads]

    def held_pages(self, page_size: int = 2_000) -> Iterator[list[Movement]]:
        """Yield every held movement, oldest first, ``page_size`` at a time (each page its own read)."""
        after = 0
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    select(M.c.seq, M.c.payload)
                    .where(M.c.status == Status.HELD, M.c.seq > after)
                    .order_by(M.c.seq)
                    .limit(page_size)
                ).all()
            if not rows:
                return
            after = rows[-1][0]
            yield [Movement.from_json(payload) for _, payload in rows]

    def release_held(self, mapped: Sequence[Movement], resolution: str) -> int:
        """Store the mapping of held movements, make them deliverable and close their exceptions."""
        if not mapped:
            return 0
        now = self.clock()
        with self.db.write() as conn:
            result = conn.execute(
                update(M)
                .where(M.c.event_id == bindparam("b_event_id"), M.c.status == Status.HELD)
                .values(
                    status=Status.READY,
                    sku=bindparam("b_sku"),
                    delta=bindparam("b_delta"),
                    payload=bindparam("b_payload"),
                    next_attempt_at=0.0,
                ),
                [
                    {
                        "b_event_id": m.event_id,
                        "b_sku": m.sku,
                        "b_delta": str(m.stock_delta()),
                        "b_payload": m.to_json(),
                    }
                    for m in mapped
                ],
            )
            conn.execute(
                update(E)
                .where(E.c.issue_key == bindparam("b_key"), E.c.status == ExceptionStatus.OPEN)
                .values(
                    status=ExceptionStatus.RESOLVED,
                    resolved_at=now,
                    updated_at=now,
                    resolution=resolution,
                ),
                [{"b_key": m.event_id} for m in mapped],
            )
        return max(result.rowcount, 0)

    def _open_exception(
        self,
        conn: Any,
        movement: Movement,
        *,
        category: Category,
        code: str,
        message: str,
        now: float,
    ) -> None:
        existing = conn.execute(select(E.c.id).where(E.c.issue_key == movement.event_id)).scalar_one_or_none()
        if existing is None:
            conn.execute(
                insert(E).values(
                    issue_key=movement.event_id,
                    event_id=movement.event_id,
                    category=category,
                    status=ExceptionStatus.OPEN,
                    code=code,
                    message=message,
                    source=movement.source,
                    source_ref=movement.source_ref,
                    pos_transaction_id=movement.pos_transaction_id,
                    line_no=movement.line_no,
                    raw_item_id=movement.raw_item_id,
                    raw="",
                    occurrences=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            conn.execute(
                update(E)
                .where(E.c.id == existing)
                .values(
                    category=category,
                    status=ExceptionStatus.OPEN,
                    code=code,
                    message=message,
                    occurrences=E.c.occurrences + 1,
                    updated_at=now,
                    resolved_at=None,
                    resolution=None,
                )
            )

    # -- housekeeping ------------------------------------------------------------------------

    def counts(self) -> Counts:
        """Return queue sizes, open exceptions and the age markers status displays need."""
        with self.db.read() as conn:
            by_status: dict[str, int] = dict(conn.execute(select(M.c.status, func.count()).group_by(M.c.status)).all())
            oldest = conn.execute(
                select(M.c.enqueued_at)
                .where(M.c.status.in_([Status.READY, Status.IN_FLIGHT]))
                .order_by(M.c.seq)
                .limit(1)
            ).scalar_one_or_none()
            last_acked = conn.execute(
                select(func.max(M.c.acked_at)).where(M.c.status == Status.ACKED)
            ).scalar_one_or_none()
            open_exceptions = conn.execute(select(func.count()).where(E.c.status == ExceptionStatus.OPEN)).scalar_one()
        return Counts(
            ready=by_status.get(Status.READY, 0),
            in_flight=by_status.get(Status.IN_FLIGHT, 0),
            acked=by_status.get(Status.ACKED, 0),
            held=by_status.get(Status.HELD, 0),
            rejected=by_status.get(Status.REJECTED, 0),
            discarded=by_status.get(Status.DISCARDED, 0),
            exceptions_open=int(open_exceptions),
            oldest_pending_enqueued_at=oldest,
            last_acked_at=last_acked,
        )

    def purge(self, retention_days: float) -> int:
        """Delete acked movements, resolved exceptions and file cursors older than the retention.

        Movements that were never acknowledged are never purged, however old.
        """
        cutoff = self.clock() - retention_days * 86_400
        with self.db.write() as conn:
            gone = conn.execute(delete(M).where(M.c.status == Status.ACKED, M.c.acked_at < cutoff)).rowcount
            gone += conn.execute(
                delete(M).where(
                    M.c.status == Status.DISCARDED,
                    M.c.event_id.in_(
                        select(E.c.event_id).where(E.c.status == ExceptionStatus.RESOLVED, E.c.resolved_at < cutoff)
                    ),
                )
            ).rowcount
            conn.execute(delete(E).where(E.c.status == ExceptionStatus.RESOLVED, E.c.resolved_at < cutoff))
            conn.execute(delete(C).where(C.c.key.like("file:%"), C.c.updated_at < cutoff))
            conn.execute(delete(V).where(V.c.created_at < cutoff))
        return max(gone, 0)


# Hot-path statements, written once and run on the driver connection (sqlite3 caches their plans).
_MOVEMENT_COLUMNS = (
    "event_id, status, source, pos_transaction_id, line_no, kind, sku, location, delta, business_day, "
    "occurred_at, payload, attempts, next_attempt_at, lease_until, enqueued_at, acked_at, result, last_error"
)
_INSERT_MOVEMENT = (
    f"INSERT INTO movement ({_MOVEMENT_COLUMNS}) "  # noqa: S608 (a constant column list)
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0.0, NULL, ?, NULL, NULL, NULL)"
)
# Due: next_attempt_at has come, or lies further ahead than any backoff (the clock jumped back).
_CLAIM = (
    "SELECT seq, payload FROM movement WHERE status = ? AND (next_attempt_at <= ? OR next_attempt_at > ?) "
    "ORDER BY seq LIMIT ?"
)
_RETRY = (
    "UPDATE movement SET status = ?, next_attempt_at = ?, lease_until = NULL, last_error = ? "
    "WHERE event_id = ? AND status = ?"
)
_LEASE = "UPDATE movement SET status = ?, lease_until = ?, attempts = attempts + 1 WHERE seq IN ({})"
_ACK = (
    "UPDATE movement SET status = ?, acked_at = ?, result = ?, wms_position = ?, lease_until = NULL, "
    "last_error = NULL WHERE event_id = ? AND status != ?"
)


def driver(conn: Connection) -> sqlite3.Connection:
    """Return the sqlite3 connection under an open SQLAlchemy connection (same transaction)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _movement_row(m: Movement, now: float) -> tuple[Any, ...]:
    """Return the values of ``_INSERT_MOVEMENT`` for one movement."""
    mapped = m.sku is not None
    return (
        m.event_id,
        Status.READY.value if mapped else Status.HELD.value,
        m.source,
        m.pos_transaction_id,
        m.line_no,
        m.kind.value,
        m.sku,
        m.location,
        str(m.stock_delta()) if mapped else "0",
        m.business_day.isoformat(),
        m.occurred_at.isoformat(),
        m.to_json(),
        now,
    )


def _void_target_words(void: PostVoid) -> str:
    parts = []
    if void.voided_terminal_id:
        parts.append(f"terminal {void.voided_terminal_id}")
    if void.voided_business_day:
        parts.append(f"business day {void.voided_business_day.isoformat()}")
    return f" ({', '.join(parts)})" if parts else ""


def _issue_row(issue: CaptureIssue, now: float) -> dict[str, Any]:
    return {
        "issue_key": issue.event_id or issue.issue_id,
        "event_id": issue.event_id,
        "category": category_for(issue.code, holds_movement=issue.event_id is not None),
        "status": ExceptionStatus.OPEN,
        "code": issue.code,
        "message": issue.message,
        "source": issue.source,
        "source_ref": issue.source_ref,
        "pos_transaction_id": issue.pos_transaction_id,
        "line_no": issue.line_no,
        "raw_item_id": issue.raw_item_id,
        "raw": issue.raw[:4000],
        "occurrences": 1,
        "created_at": now,
        "updated_at": now,
        "resolved_at": None,
        "resolution": None,
    }
