"""The store stock view: snapshots, effective stock, and the race where an ack and a snapshot cross.

The property tests drive a real outbox file and a small model WMS (a ledger with positions, whose
snapshots include exactly the events at or below their version) through random interleavings of
captures, pushes, acks arriving late or never, snapshots taken at any moment and stored late or
out of order.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain import Kind, Snapshot, StockLevel, make_event_id
from outbox.queue import Outbox
from outbox.stock import StockView
from tests.unit.test_domain import movement

SKUS = ("A", "B", "C")
OPENING = {"A": Decimal(50), "B": Decimal(20), "C": Decimal(0)}
T0 = 1_700_000_000.0


@dataclass
class ModelWms:
    """A WMS ledger: events applied once, each at a position; snapshots pinned to a version."""

    applied: dict[str, tuple[int, str, Decimal]] = field(default_factory=dict)  # event_id -> (seq, sku, delta)
    seq: int = 0

    def apply(self, event_id: str, sku: str, delta: Decimal) -> int:
        if event_id not in self.applied:
            self.seq += 1
            self.applied[event_id] = (self.seq, sku, delta)
        return self.applied[event_id][0]  # duplicates answer the original position

    def snapshot(self) -> Snapshot:
        levels = {sku: on_hand for sku, on_hand in OPENING.items()}
        for _, sku, delta in self.applied.values():
            levels[sku] += delta
        return Snapshot(
            store_id="S001",
            version=self.seq,
            as_of=datetime.fromtimestamp(T0, UTC),
            levels=[StockLevel(sku=s, location="S001", on_hand=q) for s, q in sorted(levels.items())],
        )


ops = st.lists(
    st.one_of(
        st.tuples(st.just("capture"), st.sampled_from(SKUS), st.integers(1, 5), st.sampled_from(["sale", "return"])),
        st.tuples(st.just("push"), st.integers(1, 4)),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("lose_ack"), st.integers(0, 3)),
        st.tuples(st.just("take_snapshot")),
        st.tuples(st.just("store_snapshot"), st.integers(0, 3)),
    ),
    max_size=40,
)


class Run:
    """One store: a real outbox and stock view, a model WMS, and what is in transit between them."""

    def __init__(self, folder: Path, *, lose_acks: bool) -> None:
        self.outbox = Outbox.open_file(folder / "outbox.sqlite", clock=lambda: T0, lease_s=60, max_backoff_s=300)
        self.view = StockView(self.outbox.db)
        self.wms = ModelWms()
        self.lose_acks = lose_acks
        self.truth = dict(OPENING)
        self.acks_in_transit: list[list[tuple[str, int]]] = []
        self.snapshots_in_transit: list[Snapshot] = []
        self.captured = 0

    def step(self, op: tuple[object, ...], *, guarded: bool) -> None:
        name = op[0]
        if name == "capture":
            sku, qty, kind = str(op[1]), int(op[2]), Kind(str(op[3]))  # type: ignore[call-overload]
            self.captured += 1
            m = movement(
                event_id=make_event_id("S001", f"T{self.captured}", 1, kind),
                pos_transaction_id=f"T{self.captured}",
                kind=kind,
                sku=sku,
                quantity=Decimal(qty),
                original_quantity=Decimal(qty),
            )
            self.outbox.enqueue([m], source="pos")
            self.truth[sku] += m.stock_delta()
        elif name == "push":
            batch = self.outbox.claim(int(op[1]))  # type: ignore[call-overload]
            if batch:
                self.acks_in_transit.append(
                    [(m.event_id, self.wms.apply(m.event_id, m.sku or "", m.stock_delta())) for m in batch]
                )
        elif name in ("ack", "lose_ack") and self.acks_in_transit:
            results = self.acks_in_transit.pop(int(op[1]) % len(self.acks_in_transit))  # type: ignore[call-overload]
            if name == "ack" or not self.lose_acks:
                self.outbox.ack([(e, "accepted") for e, _ in results], dict(results))
            else:  # applied by the WMS, answer lost: the agent sends it again later
                self.outbox.retry_later([e for e, _ in results], 0.0, "answer lost")
        elif name == "take_snapshot":
            self.snapshots_in_transit.append(self.wms.snapshot())
        elif name == "store_snapshot" and self.snapshots_in_transit:
            # The agent stores a snapshot only between exchanges (the delivery loop's lock).
            if guarded and self.acks_in_transit:
                return
            snapshot = self.snapshots_in_transit.pop(int(op[1]) % len(self.snapshots_in_transit))  # type: ignore[call-overload]
            self.view.replace(snapshot, T0)

    def effective(self) -> dict[str, Decimal]:
        records = self.view.all(T0)
        if self.view.info() is None:
            return {}
        return {r.sku: r.effective_on_hand for r in records}

    def quiesce(self) -> None:
        """Deliver everything and record every answer: the systems are quiet."""
        for results in self.acks_in_transit:
            self.outbox.ack([(e, "accepted") for e, _ in results], dict(results))
        self.acks_in_transit.clear()
        while batch := self.outbox.claim(50):
            self.outbox.ack(
                [(m.event_id, "accepted") for m in batch],
                {m.event_id: self.wms.apply(m.event_id, m.sku or "", m.stock_delta()) for m in batch},
            )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_effective_stock_is_true_at_every_step_when_snapshots_are_stored_between_exchanges(
    steps: list[tuple[object, ...]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        run = Run(Path(folder), lose_acks=False)
        run.step(("take_snapshot",), guarded=True)
        run.step(("store_snapshot", 0), guarded=True)
        try:
            for op in steps:
                run.step(op, guarded=True)
                assert run.effective() == run.truth, op
            run.quiesce()
            assert run.effective() == run.truth
        finally:
            run.outbox.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_effective_stock_is_true_once_quiet_even_with_lost_acks_and_unguarded_snapshots(
    steps: list[tuple[object, ...]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        run = Run(Path(folder), lose_acks=True)
        run.step(("take_snapshot",), guarded=False)
        run.step(("store_snapshot", 0), guarded=False)
        try:
            for op in steps:
                run.step(op, guarded=False)
            run.quiesce()
            for snapshot in run.snapshots_in_transit:  # late snapshots arrive after all: stale ones are ignored
                run.view.replace(snapshot, T0)
            assert run.effective() == run.truth
            run.view.replace(run.wms.snapshot(), T0)  # and a fresh one changes nothing
            assert run.effective() == run.truth
        finally:
            run.outbox.close()


def test_an_ack_that_arrives_after_the_snapshot_that_includes_it_is_not_counted_twice(tmp_path: Path) -> None:
    outbox = Outbox.open_file(tmp_path / "o.sqlite", clock=lambda: T0)
    view = StockView(outbox.db)
    wms = ModelWms()
    view.replace(wms.snapshot(), T0)
    sale = movement(sku="A", quantity=Decimal(3), original_quantity=Decimal(3))
    outbox.enqueue([sale], source="pos")
    assert view.lookup("A", T0)[0].effective_on_hand == 47
    [claimed] = outbox.claim(1)
    position = wms.apply(claimed.event_id, "A", Decimal(-3))
    after = wms.snapshot()  # taken after the WMS applied the sale
    assert view.lookup("A", T0)[0].effective_on_hand == 47  # in flight: counted once
    outbox.ack([(claimed.event_id, "accepted")], {claimed.event_id: position})
    record = view.lookup("A", T0)[0]
    assert (record.snapshot_on_hand, record.pending_delta, record.effective_on_hand) == (50, -3, 47)
    assert view.replace(after, T0)
    record = view.lookup("A", T0)[0]
    assert (record.snapshot_on_hand, record.pending_delta, record.effective_on_hand) == (47, 0, 47)
    assert not view.replace(ModelWms().snapshot(), T0)  # a stale snapshot never overwrites a newer one
    assert view.lookup("A", T0)[0].snapshot_on_hand == 47
    outbox.close()


def test_record_fields_age_allocation_and_lookup_by_barcode(tmp_path: Path) -> None:
    from agent.domain import ItemRecord
    from outbox.items import ItemCache

    outbox = Outbox.open_file(tmp_path / "o.sqlite", clock=lambda: T0)
    view = StockView(outbox.db)
    ItemCache(outbox.db).replace([ItemRecord(sku="A", barcodes=("0012345678905",), aliases=("apple",))])
    snap = Snapshot(
        "S001",
        7,
        datetime.fromtimestamp(T0 - 30, UTC),
        [StockLevel("A", "S001", Decimal(10), Decimal(4), Decimal(6))],
    )
    view.replace(snap, T0 - 10)
    outbox.enqueue([movement(sku="A", quantity=Decimal(1), original_quantity=Decimal(1))], source="pos")
    assert view.resolve("0012345678905") == "A" and view.resolve("apple") == "A" and view.resolve("nope") is None
    [record] = view.lookup("A", T0)
    assert record.to_json() == {
        "sku": "A",
        "location": "S001",
        "snapshot_on_hand": "10",
        "pending_delta": "-1",
        "effective_on_hand": "9",
        "allocated": "4",
        "available": "5",
        "snapshot_as_of": datetime.fromtimestamp(T0 - 30, UTC).isoformat(),
        "snapshot_age_s": 10.0,
    }
    outbox.close()
