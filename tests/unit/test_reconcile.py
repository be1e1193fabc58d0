"""Reconciliation of a business day from a real outbox file, and the drift rule of the status."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

from agent.domain import Kind, make_event_id
from agent.status import Thresholds, evaluate
from outbox.queue import Counts, Outbox
from outbox.reconcile import reconcile, render, to_csv, write_csv
from tests.unit.test_domain import movement

DAY = date(2026, 11, 20)


def sale(n: int, sku: str | None, qty: int = 1, day: date = DAY):  # type: ignore[no-untyped-def]
    return movement(
        event_id=make_event_id("S001", f"T{n}", 1, Kind.SALE),
        pos_transaction_id=f"T{n}",
        sku=sku,
        raw_item_id=sku or "MYSTERY",
        quantity=Decimal(qty),
        original_quantity=Decimal(qty),
        business_day=day,
    )


def test_report_separates_acked_pending_and_rejected_and_lists_the_movements_behind(tmp_path: Path) -> None:
    outbox = Outbox.open_file(tmp_path / "o.sqlite")
    outbox.enqueue(
        [sale(1, "A", 2), sale(2, "A", 1), sale(3, "B", 4), sale(4, None), sale(5, "A", 9, date(2026, 11, 21))]
    )
    batch = outbox.claim(10)
    outbox.ack([(batch[0].event_id, "accepted"), (batch[2].event_id, "duplicate")])
    outbox.reject(batch[1].event_id, "LOCATION_CLOSED", "location 'S001' is closed")
    report = reconcile(outbox.db, DAY)
    by_sku = {s.sku: s for s in report.skus}
    assert set(by_sku) == {"A", "B", "?MYSTERY"}  # the other day's sale is not in this day
    a = by_sku["A"]
    assert (a.captured, a.wms_acked, a.outbox_pending, a.difference) == (-3, -2, -1, -1)
    assert [(m.pos_transaction_id, m.status, m.last_error) for m in a.behind] == [
        ("T2", "rejected", "LOCATION_CLOSED: location 'S001' is closed")
    ]
    assert not by_sku["B"].differs and by_sku["?MYSTERY"].differs
    assert report.drift_skus == 2 and not report.clean
    assert "2 SKU(s) differ" in render(report) and "transaction T2 line 1" in render(report)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert [r["row"] for r in rows if r["sku"] == "A"] == ["sku", "movement"]
    path = write_csv(report, tmp_path / "reports")
    assert path.name == "reconcile-2026-11-20.csv" and path.read_text() == to_csv(report)
    outbox.ack([(batch[1].event_id, "accepted")])
    assert reconcile(outbox.db, DAY).drift_skus == 1  # only the unmapped line is left
    outbox.close()


def test_drift_beyond_the_threshold_is_red_in_the_status_state_machine() -> None:
    counts = Counts(0, 0, 10, 0, 0, 0, 0, None, 1.0)
    live = {"running": True, "heartbeat_at": 100.0, "wms_reachable": True, "reconcile_day": "2026-11-20"}
    limits = Thresholds(sla_s=60, offline_alert_after_s=900, disk_min_free_mb=0, drift_threshold=1)
    assert evaluate(counts, {**live, "reconcile_drift_skus": 1}, limits, 100.0, None)[0] == "green"
    state, reasons = evaluate(counts, {**live, "reconcile_drift_skus": 2}, limits, 100.0, None)
    assert state == "red" and "2 SKU(s) differ" in reasons[0]


def test_a_day_that_differed_is_reconciled_again_until_it_is_clean() -> None:
    import time
    from datetime import datetime, timedelta
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from agent.runtime import RECONCILE_RECHECK_S, Agent

    yesterday = (datetime.now(ZoneInfo("America/Chicago")).date() - timedelta(days=1)).isoformat()
    runs: list[date] = []
    live = SimpleNamespace(reconcile_day=yesterday, reconcile_drift_skus=3, reconcile_at=time.time())
    agent = SimpleNamespace(
        config=SimpleNamespace(
            agent=SimpleNamespace(timezone="America/Chicago"), reconcile=SimpleNamespace(at="00:00")
        ),
        live=SimpleNamespace(snapshot=lambda: live),
        reconcile=runs.append,
    )
    Agent.reconcile_if_due(agent)  # type: ignore[arg-type]
    assert runs == [], "checked a moment ago: not again yet"
    live.reconcile_at = time.time() - RECONCILE_RECHECK_S - 1
    Agent.reconcile_if_due(agent)  # type: ignore[arg-type]
    assert runs == [date.fromisoformat(yesterday)], "still differing and due: reconciled again"
    live.reconcile_drift_skus = 0
    Agent.reconcile_if_due(agent)  # type: ignore[arg-type]
    assert len(runs) == 1, "a clean day is not reconciled again"
