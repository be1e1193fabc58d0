"""Where sources hand over batches: map items, store durably, wake delivery.

Invariants:
- ``submit`` returns only after the batch is committed; any storage failure is raised as
  ``CaptureRefused`` so the source keeps its input.
- Post-voids are applied inside the outbox transaction that stores them (or that stores the voided
  lines, whichever comes second); the reversing movements are built by
  ``pos_adapters.transactions.reverse_movements`` and mapped here like every other movement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.domain import CaptureIssue, Movement, PostVoid
from agent.mapping import ItemMaster
from outbox.db import StorageFull
from outbox.queue import Outbox
from pos_adapters.base import Batch, CaptureRefused, SubmitResult
from pos_adapters.transactions import reverse_movements

log = logging.getLogger("possync.capture")


class OutboxSink:
    """A source's ``BatchSink``: the item master, then the outbox, then a nudge to delivery."""

    def __init__(self, source: str, outbox: Outbox, items: ItemMaster, on_stored: Callable[[int], None]) -> None:
        """Bind the sink to one source name."""
        self.source = source
        self.outbox = outbox
        self.items = items
        self.on_stored = on_stored

    def submit(self, batch: Batch) -> SubmitResult:
        """Map, store (movements, issues and cursor in one transaction) and wake delivery."""
        mapped, issues = self.items.map(batch.movements)
        try:
            result = self.outbox.enqueue(
                mapped,
                batch.cursor,
                [*batch.issues, *issues],
                source=self.source,
                voids=batch.voids,
                reverse=self._reverse,
            )
        except StorageFull as exc:
            raise CaptureRefused(f"the disk is full: {exc}") from exc
        except Exception as exc:
            raise CaptureRefused(str(exc)) from exc
        if result.new or result.reversals:
            self.on_stored(len(result.new) + len(result.reversals))
        return SubmitResult(new=result.new, duplicates=result.duplicates, held=result.held, reversals=result.reversals)

    def _reverse(self, void: PostVoid, originals: list[Movement]) -> tuple[list[Movement], list[CaptureIssue]]:
        reversals, problems = reverse_movements(void, originals)
        mapped, issues = self.items.map(reversals)
        return mapped, [*problems, *issues]

    def cursor(self, key: str) -> dict[str, Any] | None:
        """Return this source's stored cursor."""
        return self.outbox.cursor(self.source, key)

    def movements_of(self, pos_transaction_id: str) -> list[Movement]:
        """Return the stored movements of one POS transaction, in capture order."""
        return self.outbox.movements_of(pos_transaction_id)
