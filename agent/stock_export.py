"""The stock CSV export that a POS imports on its own timer.

Invariant: the file is replaced atomically (written beside it, fsynced, renamed over it), so a POS
reading at any moment sees the previous export or the new one, never a partial file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from outbox.reconcile import atomic_write
from outbox.stock import StockRecord


def render_csv(records: Iterable[StockRecord], columns: Sequence[str]) -> str:
    """Return the CSV text of ``records`` with the configured ``columns``, header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        data = record.to_json()
        writer.writerow(["" if data[c] is None else data[c] for c in columns])
    return buffer.getvalue()


def write_export(records: Iterable[StockRecord], path: Path, columns: Sequence[str]) -> int:
    """Atomically replace the export at ``path``; return the number of data rows."""
    rows = list(records)
    atomic_write(path, render_csv(rows, columns))
    return len(rows)
