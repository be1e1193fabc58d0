"""The delivery loop against an in-memory WMS that implements the client contract."""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.delivery import DeliveryLoop
from agent.domain import EventResult, ItemRecord, Kind, Movement, Outcome, PushReport, Snapshot, make_event_id
from agent.live import LiveState
from outbox.backoff import Backoff
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from outbox.state import AgentState
from tests.unit.test_domain import movement


class FakeWms:
    """Applies events once; can refuse credentials, fail whole batches, or refuse one poisoned event."""

    def __init__(self) -> None:
        self.applied: dict[str, Movement] = {}
        self.calls: list[int] = []
        self.auth_ok = True
        self.token_changed = False
        self.down = 0  # number of pushes to fail
        self.poison: str | None = None  # event refused as a whole-batch 422
        self.reject_sku: str | None = None
        self.pings = 0

    def push(self, batch: Sequence[Movement]) -> PushReport:
        self.calls.append(len(batch))
        if not self.auth_ok:
            return PushReport(results=[], auth_failed=True, error="HTTP 401")
        if self.down:
            self.down -= 1
            return PushReport(
                results=[EventResult(m.event_id, Outcome.RETRY) for m in batch], error="HTTP 503", retry_after=0.0
            )
        if self.poison and any(m.event_id == self.poison for m in batch):
            if len(batch) > 1:
                return PushReport(results=[], split=True, error="HTTP 422")
            return PushReport(results=[EventResult(batch[0].event_id, Outcome.REJECTED, "HTTP_422", "malformed")])
        results = []
        for m in batch:
            if m.sku == self.reject_sku:
                results.append(EventResult(m.event_id, Outcome.REJECTED, "UNKNOWN_SKU", f"SKU {m.sku} unknown"))
            elif m.event_id in self.applied:
                results.append(EventResult(m.event_id, Outcome.DUPLICATE))
            else:
                self.applied[m.event_id] = m
                results.append(EventResult(m.event_id, Outcome.ACCEPTED))
        return PushReport(results=results, latency_s=0.001)

    def stock_snapshot(self) -> Snapshot:
        return Snapshot(store_id="S001", version=0, as_of=datetime.now(UTC), levels=[])

    def item_master(self) -> list[ItemRecord]:
        return []

    def ping(self) -> float:
        self.pings += 1
        if not self.auth_ok:
            from wms_client.base import WmsAuthError

            raise WmsAuthError("HTTP 401")
        return 0.001

    def refresh_credentials(self) -> bool:
        changed, self.token_changed = self.token_changed, False
        if changed:
            self.auth_ok = True
        return changed

    def close(self) -> None:
        pass


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(tmp_path / "o.sqlite")
    yield box
    box.close()


def loop_for(outbox: Outbox, wms: FakeWms, batch_size: int = 10) -> DeliveryLoop:
    return DeliveryLoop(
        outbox,
        wms,
        LiveState(AgentState(outbox.db), "test"),
        batch_size=batch_size,
        backoff=Backoff(base_s=0.01, cap_s=0.05),
    )


def fill(outbox: Outbox, n: int, sku: str = "SKU-1") -> list[Movement]:
    items = [movement(event_id=make_event_id("S001", "T", i, Kind.SALE), line_no=i, sku=sku) for i in range(1, n + 1)]
    outbox.enqueue(items, source="s")
    return items


def drain(loop: DeliveryLoop, steps: int = 100) -> None:
    for _ in range(steps):
        loop._hold_until = 0.0  # tests do not sleep through backoff or linger
        loop._last_partial_push = -1.0
        if loop.step() and loop.outbox.counts().pending == 0:
            return


def test_delivers_everything_in_order_and_once(outbox: Outbox) -> None:
    wms = FakeWms()
    items = fill(outbox, 25)
    drain(loop_for(outbox, wms))
    assert list(wms.applied) == [m.event_id for m in items]
    assert wms.calls == [10, 10, 5]
    assert outbox.counts().acked == 25


def test_whole_batch_failure_holds_the_loop_then_recovers(outbox: Outbox) -> None:
    wms = FakeWms()
    wms.down = 3
    fill(outbox, 5)
    loop = loop_for(outbox, wms)
    assert loop.step() == 0.0
    assert loop._hold_until > 0  # backing off, not hammering
    assert loop.live.snapshot().wms_reachable is False
    drain(loop)
    assert len(wms.applied) == 5 and loop.live.snapshot().wms_reachable is True


def test_one_poisoned_event_is_found_by_splitting_and_the_rest_flow(outbox: Outbox) -> None:
    wms = FakeWms()
    items = fill(outbox, 8)
    wms.poison = items[5].event_id
    drain(loop_for(outbox, wms))
    assert len(wms.applied) == 7 and items[5].event_id not in wms.applied
    (exception,) = ExceptionQueue(outbox.db).list()
    assert exception.event_id == items[5].event_id and exception.code == "HTTP_422"


def test_per_event_rejection_is_parked_with_the_wms_words(outbox: Outbox) -> None:
    wms = FakeWms()
    wms.reject_sku = "SKU-BAD"
    fill(outbox, 2, sku="SKU-BAD")
    drain(loop_for(outbox, wms))
    views = ExceptionQueue(outbox.db).list()
    assert [v.message for v in views] == ["SKU SKU-BAD unknown"] * 2
    assert outbox.counts().rejected == 2


def test_refused_credentials_pause_without_losing_or_counting_attempts(outbox: Outbox) -> None:
    wms = FakeWms()
    wms.auth_ok = False
    fill(outbox, 3)
    loop = loop_for(outbox, wms)
    wait = loop.step()
    assert wait == 0.0 and loop.step() > 0  # paused for the auth recheck interval
    assert loop.live.snapshot().auth_failed
    assert outbox.counts().ready == 3
    with outbox.db.read() as conn:
        assert conn.exec_driver_sql("SELECT MAX(attempts) FROM movement").scalar() == 0
    wms.token_changed = True  # IT stores the rotated token
    loop.sync_now()
    drain(loop)
    assert len(wms.applied) == 3 and not loop.live.snapshot().auth_failed


def test_a_rotated_token_is_picked_up_on_the_spot(outbox: Outbox) -> None:
    wms = FakeWms()
    wms.auth_ok = False
    wms.token_changed = True
    fill(outbox, 2)
    drain(loop_for(outbox, wms))
    assert len(wms.applied) == 2


def test_pause_and_resume(outbox: Outbox) -> None:
    wms = FakeWms()
    fill(outbox, 2)
    loop = loop_for(outbox, wms)
    loop.pause()
    assert loop.step() > 0 and wms.calls == []
    loop.resume()
    drain(loop)
    assert len(wms.applied) == 2


def test_partial_batches_linger_so_a_trickle_travels_together(outbox: Outbox) -> None:
    wms = FakeWms()
    loop = loop_for(outbox, wms, batch_size=10)
    fill(outbox, 1)
    assert loop.step() == 0.0 and wms.calls == [1]  # the first movement after a quiet spell goes at once
    outbox.enqueue(
        [movement(event_id=make_event_id("S001", "U", i, Kind.SALE), line_no=i) for i in range(1, 4)], source="s"
    )
    wait = loop.step()
    assert 0 < wait <= 0.05 and wms.calls == [1]  # the next partial batch waits a moment for company
    loop._last_partial_push = -1.0
    assert loop.step() == 0.0 and wms.calls == [1, 3]


def test_full_batches_never_linger(outbox: Outbox) -> None:
    wms = FakeWms()
    loop = loop_for(outbox, wms, batch_size=5)
    fill(outbox, 12)
    assert [loop.step(), loop.step()] == [0.0, 0.0] and wms.calls == [5, 5]
