import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from sqlite3 import IntegrityError  # the capture hot path runs on the driver connection

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from agent.domain import CaptureIssue, Cursor, Kind, make_event_id
from outbox.db import Database, DatabaseDamaged
from outbox.exceptions import ExceptionQueue
from outbox.migrations import CURRENT_VERSION, SchemaMismatch, SchemaTooNew, migrate
from outbox.queue import Outbox
from outbox.schema import Status
from tests.unit.test_domain import movement


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    box = Outbox.open_file(tmp_path / "outbox.sqlite", clock=clock, lease_s=60, max_backoff_s=300)
    yield box
    box.close()


def movements(n: int, txn: str = "T") -> list:
    return [
        movement(event_id=make_event_id("S001", txn, i, Kind.SALE), pos_transaction_id=txn, line_no=i)
        for i in range(1, n + 1)
    ]


def test_file_is_wal_with_full_sync_and_current_schema(outbox: Outbox) -> None:
    with outbox.db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert outbox.db.user_version() == CURRENT_VERSION


def test_non_durable_bookkeeping_leaves_the_writer_at_full_sync(outbox: Outbox) -> None:
    outbox.enqueue(movements(3), source="s")
    claimed = outbox.claim(10)
    outbox.ack([(m.event_id, "accepted") for m in claimed])
    with outbox.db.write() as conn:  # the writer connection, as the next enqueue will find it
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with outbox.db.write(durable=False) as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL, for this commit only
    with outbox.db.write() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_migrated_schema_matches_the_table_models(outbox: Outbox) -> None:
    with outbox.db.read() as conn:
        inspector = inspect(conn)
        for name, table in SQLModel.metadata.tables.items():
            columns = {c["name"]: c for c in inspector.get_columns(name)}
            assert set(columns) == set(table.columns.keys()), name
            for column in table.columns:
                if not column.primary_key:
                    assert columns[column.name]["nullable"] == column.nullable, (name, column.name)


def test_enqueue_dedupes_across_and_within_batches(outbox: Outbox) -> None:
    batch = movements(3)
    first = outbox.enqueue([*batch, batch[0]], source="s")
    assert len(first.new) == 3 and first.duplicates == []
    again = outbox.enqueue(batch, source="s")
    assert again.new == [] and sorted(again.duplicates) == sorted(m.event_id for m in batch)
    assert outbox.counts().ready == 3


def test_cursor_is_stored_with_the_batch_and_not_without_it(outbox: Outbox) -> None:
    outbox.enqueue(movements(2), Cursor("file:abc", {"rows": 2}), source="s")
    assert outbox.cursor("s", "file:abc") == {"rows": 2}
    broken = replace(movements(1, "U")[0], line_no=None)  # NOT NULL violation inside the transaction
    with pytest.raises(IntegrityError):
        outbox.enqueue([*movements(2, "V"), broken], Cursor("file:abc", {"rows": 99}), source="s")
    assert outbox.cursor("s", "file:abc") == {"rows": 2}
    assert outbox.counts().ready == 2  # nothing of the failed batch was stored


def test_claim_is_ordered_and_leased(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(movements(5), source="s")
    first = outbox.claim(2)
    second = outbox.claim(10)
    assert [m.line_no for m in first] == [1, 2]
    assert [m.line_no for m in second] == [3, 4, 5]
    assert outbox.claim(10) == []
    counts = outbox.counts()
    assert counts.in_flight == 5 and counts.pending == 5


def test_ack_reject_retry(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(movements(4), source="s")
    claimed = outbox.claim(4)
    outbox.ack([(claimed[0].event_id, "accepted"), (claimed[1].event_id, "duplicate")])
    outbox.reject(claimed[2].event_id, "UNKNOWN_SKU", "SKU 'X' is not in the WMS item master")
    outbox.retry_later([claimed[3].event_id], 30, "HTTP 503")
    counts = outbox.counts()
    assert (counts.acked, counts.rejected, counts.ready, counts.in_flight) == (2, 1, 1, 0)
    assert counts.exceptions_open == 1
    (exception,) = ExceptionQueue(outbox.db).list()
    assert exception.code == "UNKNOWN_SKU" and "not in the WMS item master" in exception.message
    assert exception.pos_transaction_id == "T" and exception.line_no == 3 and exception.raw_item_id == "0012345678905"
    assert outbox.claim(10) == []  # still in backoff
    assert outbox.next_due_in() == pytest.approx(30)
    clock.now += 31
    assert [m.line_no for m in outbox.claim(10)] == [4]


def test_a_clock_that_jumped_back_cannot_park_movements(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(movements(1), source="s")
    outbox.retry_later([outbox.claim(1)[0].event_id], 60, "HTTP 503")
    clock.now -= 6 * 3600  # the wall clock jumps back six hours
    assert len(outbox.claim(1)) == 1


def test_leases_are_recovered_at_start_up(tmp_path: Path, clock: Clock) -> None:
    box = Outbox.open_file(tmp_path / "o.sqlite", clock=clock)
    box.enqueue(movements(3), source="s")
    assert len(box.claim(3)) == 3
    box.db.close()  # the process dies with the batch in flight
    reopened = Outbox.open_file(tmp_path / "o.sqlite", clock=clock)
    assert reopened.counts().ready == 3
    assert [m.line_no for m in reopened.claim(3)] == [1, 2, 3]
    reopened.close()


def test_expired_leases_only(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(movements(2), source="s")
    outbox.claim(1)
    clock.now += 30
    outbox.claim(1)
    clock.now += 40  # first lease (60 s) expired, second not
    assert outbox.recover_leases(expired_only=True) == 1


def test_release_does_not_count_an_attempt(outbox: Outbox) -> None:
    outbox.enqueue(movements(1), source="s")
    claimed = outbox.claim(1)
    outbox.release([claimed[0].event_id])
    with outbox.db.read() as conn:
        assert conn.exec_driver_sql("SELECT attempts, status FROM movement").one() == (0, "ready")


def test_held_movements_open_exceptions_and_are_released_once_mapped(outbox: Outbox) -> None:
    unmapped = replace(movements(1)[0], sku=None)
    issue = CaptureIssue(
        issue_id=unmapped.event_id,
        source="s",
        source_ref="a.csv row 2",
        code="UNKNOWN_ITEM",
        message="unknown",
        event_id=unmapped.event_id,
        raw_item_id="X",
    )
    result = outbox.enqueue([unmapped], None, [issue], source="s")
    assert result.held == [unmapped.event_id]
    assert outbox.claim(10) == []
    assert outbox.counts().exceptions_open == 1
    outbox.enqueue([unmapped], None, [issue], source="s")  # re-read: no second exception
    assert outbox.counts().exceptions_open == 1
    (held,) = outbox.held()
    assert outbox.release_held([held.mapped("SKU-1", Decimal(24), "EA")], "item master refreshed") == 1
    assert outbox.counts().exceptions_open == 0
    (claimed,) = outbox.claim(10)
    assert claimed.sku == "SKU-1" and claimed.quantity == 24


def test_capture_issues_dedupe_on_their_id(outbox: Outbox) -> None:
    issue = CaptureIssue(
        issue_id="abc",
        source="s",
        source_ref="a.csv row 9",
        code="BAD_NUMBER",
        message="quantity 'x' is not a number",
        raw="T,1,x",
    )
    outbox.enqueue([], None, [issue], source="s")
    outbox.enqueue([], None, [issue], source="s")
    (view,) = ExceptionQueue(outbox.db).list()
    assert view.category == "capture" and view.raw == "T,1,x"


def test_requeue_and_resolve(outbox: Outbox) -> None:
    outbox.enqueue(movements(2), source="s")
    a, b = outbox.claim(2)
    outbox.reject(a.event_id, "BAD_QUANTITY", "bad")
    outbox.reject(b.event_id, "UNKNOWN_SKU", "unknown")
    queue = ExceptionQueue(outbox.db)
    first, second = queue.list()
    queue.requeue(first.id, "sent again")
    queue.resolve(second.id, "item discontinued")
    assert [m.event_id for m in outbox.claim(10)] == [a.event_id]
    counts = outbox.counts()
    assert counts.discarded == 1 and counts.exceptions_open == 0
    with pytest.raises(ValueError):
        queue.requeue(second.id, "not a rejection any more")  # resolved: category stays, status closed
    # A second rejection of the same event reopens its exception rather than adding one.
    outbox.reject(a.event_id, "BAD_QUANTITY", "still bad")
    reopened = queue.get(first.id)
    assert reopened.status == "open" and reopened.occurrences == 2 and reopened.message == "still bad"


def test_retention_purges_only_old_acked_rows(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(movements(3), source="s")
    a, b, c = outbox.claim(3)
    outbox.ack([(a.event_id, "accepted")])
    outbox.retry_later([b.event_id, c.event_id], 0, "x")
    clock.now += 40 * 86400
    assert outbox.purge(retention_days=30) == 1
    counts = outbox.counts()
    assert counts.acked == 0 and counts.ready == 2  # never-acked rows survive any age


@pytest.mark.parametrize("damage", ["scribble", "truncate"])
def test_damaged_file_is_refused_not_recreated(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox.open_file(path)
    box.enqueue(movements(500), source="s")
    box.close()
    data = bytearray(path.read_bytes())
    if damage == "scribble":
        data[4096 : 4096 + 64] = b"\xff" * 64  # the header of the movement table's root page
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseDamaged):
        Outbox.open_file(path)
    assert path.read_bytes() == bytes(data)  # left exactly as found


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    Outbox.open_file(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={CURRENT_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        migrate(Database(path))
    with pytest.raises(SchemaTooNew):
        Outbox.attach(path)


def test_attach_never_migrates_or_touches_leases(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox.open_file(path)
    box.enqueue(movements(1), source="s")
    box.claim(1)
    viewer = Outbox.attach(path)
    assert viewer.counts().in_flight == 1
    viewer.db.close()
    box.close()
    fresh = tmp_path / "fresh.sqlite"
    sqlite3.connect(fresh).close()
    with pytest.raises(SchemaMismatch):
        Outbox.attach(fresh)


def test_statuses_are_the_documented_ones() -> None:
    assert {s.value for s in Status} == {"ready", "in_flight", "acked", "held", "rejected", "discarded"}


def test_a_version_1_file_with_data_migrates_to_the_current_version(tmp_path: Path) -> None:
    from outbox.migrations import MIGRATIONS

    path = tmp_path / "v1.sqlite"
    db = Database(path)
    with db.write() as conn:  # exactly what possync 0.1.0 created
        MIGRATIONS[0](conn)
        conn.exec_driver_sql("PRAGMA user_version=1")
    db.close()
    old = Outbox(Database(path))  # v1-era code paths: plain enqueue, cursor, an exception
    old.enqueue(movements(3), Cursor("file:abc", {"rows": 3}), source="s")
    old.db.close()
    assert Database(path).user_version() == 1

    box = Outbox.open_file(path)
    try:
        assert box.db.user_version() == CURRENT_VERSION == 3
        assert box.counts().ready == 3 and box.cursor("s", "file:abc") == {"rows": 3}
        assert [m.line_no for m in box.movements_of("T")] == [1, 2, 3]
        with box.db.read() as conn:
            indexes = {r[1] for r in conn.exec_driver_sql("PRAGMA index_list(movement)")}
            tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "ix_movement_pos_transaction_id" in indexes and "post_void" in tables
        assert "ix_movement_wms_position" in indexes and {"stock_level", "stock_snapshot"} <= tables
    finally:
        box.close()
    again = Outbox.open_file(path)  # migrating is done once
    assert again.counts().ready == 3
    again.close()


def test_concurrent_enqueues_are_grouped_and_each_gets_its_own_answer(outbox: Outbox) -> None:
    import threading

    commits = 0
    write = outbox.db.write

    from contextlib import contextmanager

    @contextmanager
    def counting_write():  # type: ignore[no-untyped-def]
        nonlocal commits
        with write() as conn:
            yield conn
        commits += 1

    outbox.db.write = counting_write  # type: ignore[method-assign]
    results: dict[int, object] = {}
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        barrier.wait()
        batch = movements(3, txn=f"G{i % 8}")  # pairs of threads send the same transaction
        results[i] = outbox.enqueue(batch, source="s")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outbox.counts().ready == 8 * 3
    new = sum(len(r.new) for r in results.values())  # type: ignore[attr-defined]
    dup = sum(len(r.duplicates) for r in results.values())  # type: ignore[attr-defined]
    assert (new, dup) == (24, 24)  # each line stored once; the twin request was told "duplicate"
    assert commits < 16, "concurrent enqueues should share commits"


def test_one_failing_request_does_not_fail_its_group(outbox: Outbox) -> None:
    import threading

    good, bad = movements(2, "OK"), [replace(movements(1, "BAD")[0], line_no=None)]
    gate = threading.Event()
    errors: list[BaseException] = []
    done: list[object] = []
    with outbox._group._leader:  # hold the group's leader so both requests queue up into one group

        def send(batch: list) -> None:  # type: ignore[type-arg]
            try:
                done.append(outbox.enqueue(batch, source="s"))
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(b,)) for b in (good, bad)]
        for t in threads:
            t.start()
        while len(outbox._group._queue) < 2:
            gate.wait(0.01)
    for t in threads:
        t.join()
    assert len(done) == 1 and len(errors) == 1 and isinstance(errors[0], IntegrityError)
    assert outbox.counts().ready == 2


def test_events_retried_alone_back_off_on_their_own_attempts(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(movements(1), source="s")
    seen: list[int] = []

    def delay_for(attempts: int) -> float:
        seen.append(attempts)
        return 10.0 * attempts

    for attempts in (1, 2, 3):
        (lone,) = outbox.claim(10)
        outbox.retry_each_later([lone.event_id], delay_for, "E_TEMP: try again")
        clock.now += 10.0 * attempts - 1
        assert outbox.claim(10) == [], "due before its own backoff"
        clock.now += 1
    assert seen == [1, 2, 3]
    with outbox.db.read() as conn:
        row = conn.exec_driver_sql("SELECT status, last_error FROM movement").one()
    assert tuple(row) == ("ready", "E_TEMP: try again")


def test_every_held_movement_is_looked_at_not_only_the_first_page(outbox: Outbox) -> None:
    from types import SimpleNamespace

    from agent.domain import ItemRecord
    from agent.mapping import ItemMaster
    from agent.runtime import Agent

    unknown = [replace(m, sku=None, raw_item_id="NEVER-HEARD-OF") for m in movements(25, "U")]
    later = [replace(m, sku=None, raw_item_id="SKU-NEW") for m in movements(5, "N")]  # stored after the flood
    outbox.enqueue([*unknown, *later], source="s")
    assert [len(page) for page in outbox.held_pages(page_size=10)] == [10, 10, 10]
    woken: list[bool] = []
    agent = SimpleNamespace(
        outbox=outbox,
        items=ItemMaster([ItemRecord(sku="SKU-NEW")]),
        delivery=SimpleNamespace(wake=lambda: woken.append(True)),
    )
    assert Agent.release_held(agent, "item master refreshed", page_size=10) == 5  # type: ignore[arg-type]
    assert woken == [True]
    assert sorted(m.pos_transaction_id for m in outbox.claim(100)) == ["N"] * 5
    assert len(outbox.held(limit=100)) == 25
