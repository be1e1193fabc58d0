"""Periodic jobs on one thread, with the ``schedule`` library.

Invariants:
- Every job is wrapped: an exception is logged once per failure streak and the job keeps its
  schedule (``schedule`` would otherwise re-run a failed job on every tick, a hot loop).
- The thread sleeps until the next job is due (at most one second at a time, to notice stop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import schedule

log = logging.getLogger("possync.scheduler")


class Scheduler:
    """A private ``schedule.Scheduler`` run on its own thread."""

    def __init__(self) -> None:
        """Start with no jobs."""
        self._scheduler = schedule.Scheduler()
        self._failing: set[str] = set()
        self._jobs: dict[str, Callable[[], None]] = {}

    def every(self, seconds: float, name: str, job: Callable[[], None]) -> None:
        """Run ``job`` every ``seconds`` (at least one second apart)."""
        self._jobs[name] = job
        self._scheduler.every(max(round(seconds), 1)).seconds.do(self._guarded, name, job)

    def run_now(self, name: str) -> None:
        """Run a registered job immediately in the calling thread (guarded)."""
        self._guarded(name, self._jobs[name])

    def _guarded(self, name: str, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:
            if name not in self._failing:
                log.warning("scheduled job %s failed: %s", name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self._failing.add(name)
        else:
            if name in self._failing:
                log.info("scheduled job %s works again", name)
            self._failing.discard(name)

    def run(self, stop: threading.Event) -> None:
        """Run due jobs until ``stop`` is set."""
        while not stop.is_set():
            self._scheduler.run_pending()
            idle = self._scheduler.idle_seconds
            stop.wait(timeout=min(max(idle if idle is not None else 1.0, 0.05), 1.0))
