"""Post-voids through the real sink and outbox: whichever arrives first, the net is the same, once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from agent.capture import OutboxSink
from agent.domain import Disposition, ItemRecord, Kind, Movement, PostVoid, make_event_id
from agent.mapping import ItemMaster
from agent.operator import CannotRetry, retry_exception
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from pos_adapters.base import Batch
from tests.unit.test_domain import movement

ITEMS = ItemMaster(
    [
        ItemRecord(sku="SKU-1", base_unit="EA", barcodes=("0012345678905",)),
        ItemRecord(sku="SKU-2", base_unit="EA", units={"CS": Decimal(12)}),
    ]
)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def sink(outbox: Outbox, name: str = "src") -> OutboxSink:
    return OutboxSink(name, outbox, ITEMS, lambda _n: None)


def line(txn: str, line_no: int, kind: Kind = Kind.SALE, item: str = "SKU-1", qty: str = "2", **kw: object) -> Movement:
    q = Decimal(qty)
    base = movement(
        event_id=make_event_id("S001", txn, line_no, kind),
        pos_transaction_id=txn,
        line_no=line_no,
        kind=kind,
        sku=None,
        raw_item_id=item,
        quantity=q,
        original_quantity=q,
        terminal_id="R1",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def void(of: str, own: str = "PV-1", terminal: str | None = "R1", day: date | None = None) -> PostVoid:
    return PostVoid(
        store_id="S001",
        pos_transaction_id=own,
        terminal_id="R1",
        business_day=date(2026, 11, 20),
        occurred_at=datetime(2026, 11, 20, 18, 0, tzinfo=UTC),
        voided_transaction_id=of,
        voided_terminal_id=terminal,
        voided_business_day=day,
        source="src",
        source_ref="pv.jsonl line 1",
    )


def net(outbox: Outbox) -> dict[str, Decimal]:
    """Net sellable stock change per SKU of everything stored (held ones by their raw item)."""
    totals: dict[str, Decimal] = {}
    with outbox.db.read() as conn:
        payloads = conn.exec_driver_sql("SELECT payload FROM movement").scalars().all()
    for payload in payloads:
        m = Movement.from_json(payload)
        key = m.sku or m.raw_item_id
        totals[key] = totals.get(key, Decimal(0)) + m.stock_delta()
    return {k: v for k, v in totals.items() if v}


def open_codes(outbox: Outbox) -> list[str]:
    return [v.code for v in ExceptionQueue(outbox.db).list()]


def test_post_void_after_the_original_reverses_every_line_once(outbox: Outbox) -> None:
    s = sink(outbox)
    s.submit(Batch(movements=[line("T1", 1), line("T1", 2, item="SKU-2", qty="1", original_unit="CS")]))
    assert net(outbox) == {"SKU-1": Decimal(-2), "SKU-2": Decimal(-12)}
    result = s.submit(Batch(voids=[void("T1")]))
    assert sorted(result.reversals) == sorted(
        [make_event_id("S001", "PV-1", 1, Kind.RETURN), make_event_id("S001", "PV-1", 2, Kind.RETURN)]
    )
    assert net(outbox) == {}
    again = s.submit(Batch(voids=[void("T1")]))  # the same post-void read again
    assert again.reversals == [] and net(outbox) == {}
    assert open_codes(outbox) == []
    reversal = next(m for m in outbox.movements_of("PV-1") if m.line_no == 2)
    assert (reversal.kind, reversal.sku, reversal.quantity, reversal.original_unit) == (Kind.RETURN, "SKU-2", 12, "CS")
    assert reversal.terminal_id == "R1" and reversal.occurred_at == datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    assert "post-void of T1 line 2" in reversal.source_ref


def test_post_void_before_the_original_waits_visibly_then_applies_by_itself(outbox: Outbox) -> None:
    a, b = sink(outbox, "poslog"), sink(outbox, "register-push")
    a.submit(Batch(voids=[void("T9")]))
    assert open_codes(outbox) == ["VOID_WAITING"]
    (waiting,) = ExceptionQueue(outbox.db).list()
    assert waiting.category == "post_void" and "T9" in waiting.message and "automatically" in waiting.message
    with pytest.raises(CannotRetry, match="nothing to retry"):
        retry_exception(outbox, ExceptionQueue(outbox.db), ITEMS, waiting.id)
    result = b.submit(Batch(movements=[line("T9", 1), line("T9", 2, kind=Kind.RETURN, qty="1")]))
    assert len(result.new) == 2 and len(result.reversals) == 2
    assert net(outbox) == {} and open_codes(outbox) == []
    # A line of the voided transaction that arrives even later is reversed on arrival too.
    late = b.submit(Batch(movements=[line("T9", 3, qty="5")]))
    assert late.reversals == [make_event_id("S001", "PV-1", 3, Kind.RETURN)] and net(outbox) == {}


def test_original_and_post_void_in_one_batch(outbox: Outbox) -> None:
    result = sink(outbox).submit(Batch(movements=[line("T2", 1)], voids=[void("T2")]))
    assert len(result.reversals) == 1 and net(outbox) == {} and open_codes(outbox) == []


def test_terminal_and_business_day_narrow_the_match(outbox: Outbox) -> None:
    s = sink(outbox)
    s.submit(Batch(movements=[line("T3", 1, terminal_id="R2")]))
    s.submit(Batch(voids=[void("T3", terminal="R1")]))
    assert net(outbox) == {"SKU-1": Decimal(-2)} and open_codes(outbox) == ["VOID_WAITING"]
    s.submit(Batch(movements=[line("T4", 1)]))
    s.submit(Batch(voids=[void("T4", own="PV-4", day=date(2026, 11, 19))]))
    assert net(outbox) == {"SKU-1": Decimal(-4)}


def test_a_second_post_void_of_the_same_transaction_changes_nothing(outbox: Outbox) -> None:
    s = sink(outbox)
    s.submit(Batch(movements=[line("T5", 1)], voids=[void("T5")]))
    result = s.submit(Batch(voids=[void("T5", own="PV-2")]))
    assert result.reversals == [] and net(outbox) == {}
    assert open_codes(outbox) == ["VOID_DUPLICATE"]


def test_reverse_kinds_and_what_cannot_be_reversed(outbox: Outbox) -> None:
    s = sink(outbox)
    originals = [
        line("T6", 1, kind=Kind.TRANSFER_OUT, counterpart_location="DC01"),
        line("T6", 2, kind=Kind.TRANSFER_IN, counterpart_location="DC01", qty="3"),
        line("T6", 3, kind=Kind.ADJUSTMENT, qty="-4"),
        line("T6", 4, kind=Kind.RETURN, disposition=Disposition.DAMAGED),
    ]
    s.submit(Batch(movements=originals))
    s.submit(Batch(voids=[void("T6")]))
    reversals = {m.line_no: m for m in outbox.movements_of("PV-1")}
    assert (reversals[1].kind, reversals[1].counterpart_location) == (Kind.TRANSFER_IN, "DC01")
    assert reversals[2].kind is Kind.TRANSFER_OUT
    assert (reversals[3].kind, reversals[3].quantity) == (Kind.ADJUSTMENT, 4)
    assert 4 not in reversals
    assert open_codes(outbox) == ["VOID_NOT_REVERSIBLE"]
    (view,) = ExceptionQueue(outbox.db).list()
    assert "damaged" in view.message and "WMS" in view.message


def test_a_reversal_of_an_unknown_item_is_held_like_any_movement(outbox: Outbox) -> None:
    s = sink(outbox)
    s.submit(Batch(movements=[line("T7", 1, item="4006381333931")]))
    s.submit(Batch(voids=[void("T7")]))
    assert outbox.counts().held == 2
    assert sorted(open_codes(outbox)) == ["UNKNOWN_ITEM", "UNKNOWN_ITEM"]


def test_racing_sources_cannot_slip_between_check_and_insert(outbox: Outbox) -> None:
    for i in range(15):
        txn = f"R{i}"
        start = threading.Barrier(2)

        def push_void(txn: str = txn, start: threading.Barrier = start) -> None:
            start.wait()
            sink(outbox, "a").submit(Batch(voids=[void(txn, own=f"PV-{txn}")]))

        def push_original(txn: str = txn, start: threading.Barrier = start) -> None:
            start.wait()
            sink(outbox, "b").submit(Batch(movements=[line(txn, 1), line(txn, 2)]))

        threads = [threading.Thread(target=push_void), threading.Thread(target=push_original)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert net(outbox) == {} and open_codes(outbox) == []


def test_movements_of_uses_the_transaction_index(outbox: Outbox) -> None:
    sink(outbox).submit(Batch(movements=[line("T8", 1), line("T8", 2), line("X", 1)]))
    assert [m.line_no for m in sink(outbox).movements_of("T8")] == [1, 2]
    with outbox.db.read() as conn:
        plan = " ".join(
            str(r[-1])
            for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT payload FROM movement WHERE pos_transaction_id = 'T8'"
            )
        )
    assert "ix_movement_pos_transaction_id" in plan


def test_post_voids_need_a_reverse_function(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="reverse function"):
        outbox.enqueue([], voids=[void("T1")], source="s")


def test_retention_forgets_old_post_voids(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    box = Outbox.open_file(tmp_path / "o.sqlite", clock=lambda: now[0])
    try:
        sink(box).submit(Batch(movements=[line("T1", 1)], voids=[void("T1")]))
        with box.db.read() as conn:
            assert conn.exec_driver_sql("SELECT voided_transaction_id, reversed FROM post_void").all() == [("T1", 1)]
        now[0] += 31 * 86_400
        box.purge(30)
        with box.db.read() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM post_void").scalar_one() == 0
    finally:
        box.close()
