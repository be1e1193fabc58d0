"""The delivery loop: claim batches from the outbox in order, push them, record each result.

Invariants:
- Every claimed event ends as acked, rejected (parked with the WMS's reason), retried later, or
  released (credentials refused); a crash leaves it leased, and the lease returns it at start-up.
- A batch the WMS could not take holds the whole loop for the backoff delay (honouring
  Retry-After), so a WMS that is down is not hammered; "sync now" cuts the wait short.
- A batch refused as a whole without naming an event is split until the offending event is
  found; one bad event never blocks the ones behind it.
- The loop sleeps on an event, not a poll: captures and operator actions wake it.
- Under a steady trickle of captures, pushes of partial batches are at least ``LINGER_S`` apart, so
  movements arriving together travel together (fewer requests and commits); the first movement after
  a quiet spell and every full batch go at once.
- Waiting uses the monotonic clock, so wall-clock jumps neither stall nor storm retries.
- ``exchange`` is held from each push until its results are recorded (see ``outbox.stock``).
- Read-ahead: while a full batch is in flight, the next one is claimed (and decoded) on a helper
  thread, so draining a backlog overlaps the outbox's work with the WMS's. The next batch is still
  pushed only after the previous one's results are recorded, and a read-ahead batch the loop cannot
  send now (backoff, pause, refused credentials, stop) is released at once, so order is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from agent.domain import Movement, Outcome, PushReport
from agent.live import LiveState
from agent.redact import redact
from outbox.backoff import Backoff
from outbox.db import StorageFull
from outbox.queue import Outbox
from wms_client.base import WmsAuthError, WmsClient, WmsUnavailable

log = logging.getLogger("possync.delivery")

IDLE_RECHECK_S = 30.0
AUTH_RECHECK_S = 60.0
LINGER_S = 0.05  # after a partial batch, wait this long for more before the next push


class DeliveryLoop:
    """Moves movements from the outbox to the WMS, one batch at a time, in order."""

    def __init__(
        self,
        outbox: Outbox,
        client: WmsClient,
        live: LiveState,
        *,
        batch_size: int,
        backoff: Backoff,
    ) -> None:
        """Wire the loop; it does nothing until ``run``."""
        self.outbox = outbox
        self.client = client
        self.live = live
        self.batch_size = batch_size
        self.backoff = backoff
        self._wake = threading.Event()
        self._paused = False
        self._hold_until = 0.0
        self._auth_blocked_until: float | None = None
        self._failures = 0
        self._last_partial_push = -LINGER_S
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-read-ahead")
        self._ahead: Future[list[Movement]] | None = None
        # Held from a push until its results are recorded: a stock snapshot is stored only between
        # exchanges, so every event the WMS had applied by then has its ack (and position) recorded.
        self.exchange = threading.Lock()

    # -- controls ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was captured: look at the outbox now."""
        self._wake.set()

    def sync_now(self) -> None:
        """Operator asked to deliver now: end any backoff wait and re-check credentials."""
        self._hold_until = 0.0
        if self._auth_blocked_until is not None:
            self._auth_blocked_until = 0.0
        self._wake.set()

    def pause(self) -> None:
        """Stop delivering after the batch in flight (capture continues)."""
        self._paused = True
        self.live.set_paused(True)

    def resume(self) -> None:
        """Deliver again."""
        self._paused = False
        self.live.set_paused(False)
        self._wake.set()

    # -- loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    wait = self.step()
                except Exception:  # never let one bug stop delivery for good
                    log.exception("delivery step failed; retrying in 5 s")
                    self._release_ahead()
                    wait = 5.0
                if wait > 0 and not stop.is_set():
                    self._wake.wait(timeout=wait)
                    self._wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        """Release a read-ahead batch and stop the helper thread (``run`` does this when it ends)."""
        self._release_ahead()
        self._reader.shutdown(wait=True)

    def step(self) -> float:
        """Do one unit of work; return how long to wait before the next (0 = go on at once)."""
        wait = self._wait_before_claim()
        if wait > 0:
            self._release_ahead()
            return wait
        batch = self._take_ahead()
        if batch is None:
            batch = self.outbox.claim(self.batch_size)
        if not batch:
            due = self.outbox.next_due_in()
            return IDLE_RECHECK_S if due is None else min(max(due, 0.01), IDLE_RECHECK_S)
        full = len(batch) == self.batch_size
        with self.exchange:
            if full:  # a backlog: claim the next batch while this one travels
                self._ahead = self._reader.submit(self.outbox.claim, self.batch_size)
            self.deliver(batch)
        if not full:
            self._last_partial_push = time.monotonic()
        return 0.0

    def _wait_before_claim(self) -> float:
        """Return how long delivery must wait now (pause, refused credentials, backoff, linger), or 0."""
        if self._paused:
            return IDLE_RECHECK_S
        now = time.monotonic()
        if self._auth_blocked_until is not None:
            if now < self._auth_blocked_until:
                return self._auth_blocked_until - now
            if not self._credentials_ok():
                self._auth_blocked_until = time.monotonic() + AUTH_RECHECK_S
                return AUTH_RECHECK_S
            self._auth_blocked_until = None
        if now < self._hold_until:
            return self._hold_until - now
        return max(self._last_partial_push + LINGER_S - now, 0.0)

    def _take_ahead(self) -> list[Movement] | None:
        """Return the read-ahead batch (None if there is none, or if claiming it failed)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        try:
            return ahead.result()
        except Exception as exc:
            log.warning("reading the next batch ahead failed (claimed again now): %s", exc)
            return None

    def _release_ahead(self) -> None:
        """Give a read-ahead batch back to the queue untouched, so nothing overtakes what waits."""
        batch = self._take_ahead()
        if batch:
            self.outbox.release([m.event_id for m in batch])

    def deliver(self, batch: Sequence[Movement]) -> None:
        """Push one claimed batch and record what happened to each event."""
        report = _redacted(self.client.push(batch))
        if report.auth_failed and self.client.refresh_credentials():
            log.info("credentials changed in the secret store; sending again")
            report = _redacted(self.client.push(batch))
        if report.auth_failed:
            self.outbox.release([m.event_id for m in batch])
            self.live.auth_refused(report.error or "WMS refused the credentials")
            self._auth_blocked_until = time.monotonic() + AUTH_RECHECK_S
            return
        if report.split:
            middle = len(batch) // 2
            log.info("WMS refused a batch of %d as a whole (%s); splitting", len(batch), report.error)
            self.deliver(batch[:middle])
            self.deliver(batch[middle:])
            return
        self._record(batch, report)

    def _record(self, batch: Sequence[Movement], report: PushReport) -> None:
        done = [
            (r.event_id, r.outcome.value) for r in report.results if r.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE)
        ]
        rejected = [r for r in report.results if r.outcome is Outcome.REJECTED]
        retry = [r.event_id for r in report.results if r.outcome is Outcome.RETRY]
        positions = {r.event_id: r.position for r in report.results if r.position is not None}
        try:
            self.outbox.ack(done, positions)
            for result in rejected:
                self.outbox.reject(result.event_id, result.code or "REJECTED", result.message or "")
                log.warning("WMS rejected %s: %s %s", result.event_id, result.code, result.message)
        except StorageFull as exc:
            # The WMS has these; the lease expires and the resend is answered 'duplicate'.
            log.error("could not record delivery results (disk full): %s", exc)
            self._hold_until = time.monotonic() + 30.0
            return
        if done:
            self.live.count_delivered(len(done))
        if done or rejected:
            self._failures = 0
            self.live.delivered(report.latency_s)
        if retry:
            whole_batch = len(retry) == len(batch)
            message = report.error or next(
                (f"{r.code}: {r.message}" for r in report.results if r.outcome is Outcome.RETRY), "retry"
            )
            if whole_batch:
                self._failures += 1
                delay = self.backoff.delay(self._failures, report.retry_after)
                self._hold_until = time.monotonic() + delay
                self.live.failed(message)
                log.debug("batch of %d will be retried in %.1f s: %s", len(batch), delay, message)
                self.outbox.retry_later(retry, delay, message)
            else:  # the WMS took the rest: each of these backs off on its own attempts
                retry_after = report.retry_after
                self.outbox.retry_each_later(retry, lambda n: self.backoff.delay(n, retry_after), message)

    def _credentials_ok(self) -> bool:
        self.client.refresh_credentials()
        try:
            latency = self.client.ping()
        except WmsAuthError as exc:
            self.live.auth_refused(str(exc))
            return False
        except WmsUnavailable as exc:
            self.live.failed(str(exc))
            return True  # not an auth problem any more: let normal backoff handle it
        self.live.reachable(latency)
        return True


def _redacted(report: PushReport) -> PushReport:
    """Remove every known secret from the WMS's words before they are stored, shown or logged.

    A WMS may quote the request (its ``Authorization`` header included) in an error or rejection
    message; those texts end up in exception records, the status and the outbox file.
    """
    results = [
        replace(r, message=redact(r.message)) if r.message and redact(r.message) != r.message else r
        for r in report.results
    ]
    error = redact(report.error) if report.error else report.error
    return replace(report, results=results, error=error)
