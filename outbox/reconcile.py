"""Reconciliation of one business day, per SKU, with the movements behind every difference.

It compares what the POS sources captured, what the outbox still holds and what the WMS acknowledged.

Invariants:
- Read-only: one consistent read of the outbox file; nothing is changed.
- Every captured movement of the day is in exactly one column: ``wms_acked`` (the WMS accepted it or
  had it already), ``outbox_pending`` (ready, in flight, held for an unknown item, or rejected and
  waiting for a person) or ``discarded`` (an operator resolved it without delivery).
- A SKU differs when what was captured is not what the WMS acknowledged; every movement that is
  not acknowledged is listed under its SKU. Held movements have no SKU yet and are listed under
  ``?<item as the POS wrote it>``.
- ``drift_skus`` counts SKUs that differ; the runtime compares it with ``reconcile.drift_threshold``.
"""

from __future__ import annotations

import csv
import io
import json
import os  # fsync
import tempfile
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from outbox.db import Database
from outbox.schema import MovementRow, Status, table

M = table(MovementRow)
PENDING = (Status.READY, Status.IN_FLIGHT, Status.HELD, Status.REJECTED)
CSV_COLUMNS = (
    "row",
    "business_day",
    "sku",
    "captured",
    "outbox_pending",
    "wms_acked",
    "difference",
    "event_id",
    "pos_transaction_id",
    "line_no",
    "kind",
    "status",
    "delta",
    "last_error",
)


@dataclass(frozen=True, slots=True)
class MovementLine:
    """One movement of the day that the WMS has not acknowledged."""

    event_id: str
    pos_transaction_id: str
    line_no: int
    kind: str
    status: str
    delta: Decimal
    last_error: str | None


@dataclass
class SkuLine:
    """Per-SKU totals (signed stock deltas) of one business day."""

    sku: str
    captured: Decimal = Decimal(0)
    outbox_pending: Decimal = Decimal(0)
    wms_acked: Decimal = Decimal(0)
    discarded: Decimal = Decimal(0)
    movements_captured: int = 0
    movements_acked: int = 0
    behind: list[MovementLine] = field(default_factory=list)

    @property
    def difference(self) -> Decimal:
        """Captured minus acknowledged: what the WMS does not have yet (or will not get)."""
        return self.captured - self.wms_acked

    @property
    def differs(self) -> bool:
        """True when the WMS did not acknowledge every captured movement of this SKU."""
        return self.movements_acked != self.movements_captured


@dataclass(frozen=True, slots=True)
class Report:
    """The reconciliation of one business day."""

    business_day: date
    skus: list[SkuLine]

    @property
    def differences(self) -> list[SkuLine]:
        """SKUs where captured and acknowledged disagree."""
        return [s for s in self.skus if s.differs]

    @property
    def drift_skus(self) -> int:
        """How many SKUs differ."""
        return len(self.differences)

    @property
    def clean(self) -> bool:
        """True when every captured movement of the day is acknowledged by the WMS."""
        return self.drift_skus == 0

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON (quantities as decimal strings)."""
        return {
            "business_day": self.business_day.isoformat(),
            "clean": self.clean,
            "drift_skus": self.drift_skus,
            "movements": sum(s.movements_captured for s in self.skus),
            "skus": [
                {
                    "sku": s.sku,
                    "captured": _text(s.captured),
                    "outbox_pending": _text(s.outbox_pending),
                    "wms_acked": _text(s.wms_acked),
                    "discarded": _text(s.discarded),
                    "difference": _text(s.difference),
                    "movements_captured": s.movements_captured,
                    "movements_acked": s.movements_acked,
                    "behind": [_line_json(m) for m in s.behind],
                }
                for s in self.skus
            ],
        }


def reconcile(db: Database, business_day: date) -> Report:
    """Build the report of ``business_day`` from the outbox."""
    with db.read() as conn:
        rows = conn.execute(
            select(
                M.c.event_id,
                M.c.status,
                M.c.sku,
                M.c.delta,
                M.c.kind,
                M.c.pos_transaction_id,
                M.c.line_no,
                M.c.last_error,
                M.c.payload,
            )
            .where(M.c.business_day == business_day.isoformat())
            .order_by(M.c.seq)
        ).all()
    lines: dict[str, SkuLine] = {}
    for row in rows:
        sku = row.sku if row.sku is not None else "?" + str(json.loads(row.payload).get("raw_item_id", ""))
        line = lines.get(sku) or lines.setdefault(sku, SkuLine(sku))
        delta = Decimal(row.delta)
        line.captured += delta
        line.movements_captured += 1
        if row.status == Status.ACKED:
            line.wms_acked += delta
            line.movements_acked += 1
            continue
        if row.status in PENDING:
            line.outbox_pending += delta
        else:
            line.discarded += delta
        line.behind.append(
            MovementLine(row.event_id, row.pos_transaction_id, row.line_no, row.kind, row.status, delta, row.last_error)
        )
    return Report(business_day, [lines[k] for k in sorted(lines)])


def render(report: Report) -> str:
    """Return the report as text a store manager can read."""
    out = [
        f"Reconciliation of business day {report.business_day.isoformat()}: "
        + ("clean" if report.clean else f"{report.drift_skus} SKU(s) differ"),
        f"{sum(s.movements_captured for s in report.skus)} movement(s) of {len(report.skus)} SKU(s) captured.",
        "",
        f"{'SKU':<20} {'captured':>10} {'in outbox':>10} {'WMS acked':>10} {'difference':>10}",
    ]
    for s in report.skus:
        mark = " *" if s.differs else ""
        out.append(
            f"{s.sku:<20} {_text(s.captured):>10} {_text(s.outbox_pending):>10} {_text(s.wms_acked):>10} "
            f"{_text(s.difference):>10}{mark}"
        )
        for m in s.behind:
            reason = f" ({m.last_error})" if m.last_error else ""
            out.append(
                f"    {m.status:<10} {m.kind:<12} {_text(m.delta):>8}  transaction {m.pos_transaction_id} "
                f"line {m.line_no}{reason}"
            )
    return "\n".join(out)


def to_csv(report: Report) -> str:
    """Return the report as CSV: one ``sku`` row per SKU and one ``movement`` row per difference."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    day = report.business_day.isoformat()
    for s in report.skus:
        totals = [_text(v) for v in (s.captured, s.outbox_pending, s.wms_acked, s.difference)]
        writer.writerow(["sku", day, s.sku, *totals, "", "", "", "", "", "", ""])
        for m in s.behind:
            writer.writerow(
                ["movement", day, s.sku, "", "", "", "", m.event_id, m.pos_transaction_id, m.line_no, m.kind,
                 m.status, _text(m.delta), m.last_error or ""]
            )  # fmt: skip
    return buffer.getvalue()


def write_csv(report: Report, folder: Path) -> Path:
    """Write ``reconcile-<day>.csv`` into ``folder`` atomically (temporary file, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"reconcile-{report.business_day.isoformat()}.csv"
    atomic_write(path, to_csv(report))
    return path


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A staging name of its own per write: two writers (the agent's timer, a command run by hand)
    # must never interleave into one staging file and rename a mix of both over the export.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    staging = Path(name)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        staging.chmod(0o644)  # mkstemp makes it 0600; the POS reading the export is another user
        staging.replace(path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _line_json(m: MovementLine) -> dict[str, Any]:
    return {
        "event_id": m.event_id,
        "pos_transaction_id": m.pos_transaction_id,
        "line_no": m.line_no,
        "kind": m.kind,
        "status": m.status,
        "delta": _text(m.delta),
        "last_error": m.last_error,
    }


def _text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
