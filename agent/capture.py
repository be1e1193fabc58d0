"""Where sources hand over batches: map items, store durably, wake delivery.

Invariant: ``submit`` returns only after the batch is committed; any storage failure is raised
as ``CaptureRefused`` so the source keeps its input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.mapping import ItemMaster
from outbox.db import StorageFull
from outbox.queue import Outbox
from pos_adapters.base import Batch, CaptureRefused, SubmitResult

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
            result = self.outbox.enqueue(mapped, batch.cursor, [*batch.issues, *issues], source=self.source)
        except StorageFull as exc:
            raise CaptureRefused(f"the disk is full: {exc}") from exc
        except Exception as exc:
            raise CaptureRefused(str(exc)) from exc
        if result.new:
            self.on_stored(len(result.new))
        return SubmitResult(new=result.new, duplicates=result.duplicates, held=result.held)

    def cursor(self, key: str) -> dict[str, Any] | None:
        """Return this source's stored cursor."""
        return self.outbox.cursor(self.source, key)
