"""The running agent's live state, published to the outbox file for other processes to read.

Invariants:
- Transitions (WMS reachable or not, credentials refused, paused) are written at once and logged
  once; routine values (last sync, latency, heartbeat) are written at most every ``flush_every``.
- Reads (``snapshot``) never touch the disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.redact import redact
from outbox.state import AgentState

log = logging.getLogger("possync.agent")


@dataclass
class LiveValues:
    """Everything status displays need that is not a count in the outbox."""

    pid: int = field(default_factory=os.getpid)
    version: str = ""
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)
    running: bool = True
    wms_reachable: bool | None = None
    wms_latency_ms: float | None = None
    last_sync_at: float | None = None
    offline_since: float | None = None
    last_error: str | None = None
    auth_failed: bool = False
    paused: bool = False
    item_master_count: int = 0
    item_master_at: float | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_url: str | None = None
    delivered_total: int = 0
    captured_total: int = 0
    snapshot_version: int | None = None
    snapshot_pulled_at: float | None = None
    snapshot_levels: int | None = None
    reconcile_day: str | None = None
    reconcile_drift_skus: int | None = None
    reconcile_at: float | None = None


class LiveState:
    """Thread-safe live state with throttled publication to the outbox file."""

    def __init__(self, store: AgentState, version: str, flush_every: float = 2.0) -> None:
        """Start with a fresh state for this process."""
        self._store = store
        self._lock = threading.Lock()
        self._values = LiveValues(version=version)
        self._flush_every = flush_every
        self._last_flush = 0.0

    def snapshot(self) -> LiveValues:
        """Return a copy of the current values."""
        with self._lock:
            return LiveValues(**asdict(self._values))

    def delivered(self, latency_s: float | None) -> None:
        """Record a successful exchange with the WMS."""
        now = time.time()
        with self._lock:
            v = self._values
            came_back = v.wms_reachable is not True or v.auth_failed
            if came_back and v.offline_since is not None:
                log.info("WMS reachable again after %.0f s offline", now - v.offline_since)
            v.wms_reachable, v.auth_failed, v.offline_since, v.last_error = True, False, None, None
            v.last_sync_at = now
            if latency_s is not None:
                v.wms_latency_ms = round(latency_s * 1000, 1)
        self.flush(force=came_back)

    def count_delivered(self, n: int) -> None:
        """Add ``n`` events the WMS took (accepted or duplicate) to this run's total."""
        with self._lock:
            self._values.delivered_total += n

    def count_captured(self, n: int) -> None:
        """Add ``n`` newly stored movements to this run's total."""
        with self._lock:
            self._values.captured_total += n

    def reachable(self, latency_s: float | None) -> None:
        """Record that the WMS answered (a ping or a read), without a delivery."""
        with self._lock:
            v = self._values
            changed = v.wms_reachable is not True or v.auth_failed
            v.wms_reachable, v.auth_failed, v.offline_since = True, False, None
            if latency_s is not None:
                v.wms_latency_ms = round(latency_s * 1000, 1)
        self.flush(force=changed)

    def failed(self, error: str) -> None:
        """Record that the WMS could not take a batch (network, 5xx, throttling)."""
        error = redact(error)  # a WMS may quote the request's credentials back in its error text
        now = time.time()
        with self._lock:
            v = self._values
            first = v.wms_reachable is not False
            if first:
                log.warning("WMS delivery failing: %s", error)
                v.offline_since = v.offline_since or now
            v.wms_reachable, v.last_error = False, error
        self.flush(force=first)

    def auth_refused(self, error: str) -> None:
        """Record that the WMS refused our credentials; delivery pauses."""
        error = redact(error)
        with self._lock:
            v = self._values
            first = not v.auth_failed
            if first:
                log.error("%s; delivery paused until the credentials are fixed", error)
            v.auth_failed, v.last_error = True, error
            v.offline_since = v.offline_since or time.time()
        self.flush(force=first)

    def set_paused(self, paused: bool) -> None:
        """Record an operator's pause or resume."""
        with self._lock:
            self._values.paused = paused
        log.info("delivery %s by operator", "paused" if paused else "resumed")
        self.flush(force=True)

    def item_master(self, count: int) -> None:
        """Record a successful item-master refresh."""
        with self._lock:
            self._values.item_master_count, self._values.item_master_at = count, time.time()
        self.flush(force=True)

    def stock_snapshot(self, version: int, levels: int) -> None:
        """Record a stock snapshot pulled from the WMS (stored or not: it confirms the view)."""
        with self._lock:
            v = self._values
            v.snapshot_version, v.snapshot_levels, v.snapshot_pulled_at = version, levels, time.time()
        self.flush(force=True)

    def reconciled(self, day: str, drift_skus: int) -> None:
        """Record the outcome of the daily reconciliation."""
        with self._lock:
            v = self._values
            v.reconcile_day, v.reconcile_drift_skus, v.reconcile_at = day, drift_skus, time.time()
        self.flush(force=True)

    def restore_reconcile(self, day: str | None, drift_skus: int | None, at: float | None) -> None:
        """Carry the last reconciliation over a restart (it runs once a day)."""
        with self._lock:
            v = self._values
            v.reconcile_day, v.reconcile_drift_skus, v.reconcile_at = day, drift_skus, at

    def sources(self, health: dict[str, dict[str, Any]]) -> None:
        """Record the sources' health (error texts redacted: a POS API may quote its credentials back)."""
        cleaned = {
            name: {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}
            for name, values in health.items()
        }
        with self._lock:
            self._values.sources = cleaned

    def api_listening(self, url: str) -> None:
        """Record where the local API listens (the tray and scripts read it from the status)."""
        with self._lock:
            self._values.api_url = url
        self.flush(force=True)

    def stopped(self) -> None:
        """Record a clean shutdown."""
        with self._lock:
            self._values.running = False
        self.flush(force=True)

    def flush(self, *, force: bool = False) -> None:
        """Write the state to the outbox file (at most every ``flush_every`` unless forced)."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_flush < self._flush_every:
                return
            self._last_flush = now
            self._values.heartbeat_at = time.time()
            values = asdict(self._values)
        try:
            self._store.set(**values)
        except Exception as exc:  # a full disk must not stop delivery; the next flush retries
            log.warning("could not publish agent state: %s", exc)
