"""Per-minute history of the backlog for the status page's chart (pending, delivered, captured).

Invariants: at most ``minutes`` points are kept (oldest dropped); counters that went backwards (a
restart) count from zero again rather than producing negative rates; the history survives
restarts through the agent state in the outbox file.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Point:
    """One minute: the backlog at its end, and what was captured and delivered during it."""

    at: float
    pending: int
    delivered: int
    captured: int


class History:
    """A bounded ring of per-minute points."""

    def __init__(self, minutes: int = 360) -> None:
        """Keep up to ``minutes`` points (six hours by default)."""
        self._points: deque[Point] = deque(maxlen=minutes)
        self._lock = threading.Lock()
        self._last_delivered: int | None = None
        self._last_captured: int | None = None

    def sample(self, at: float, pending: int, delivered_total: int, captured_total: int) -> Point:
        """Record one point from running totals; return it."""
        with self._lock:
            delivered = _delta(self._last_delivered, delivered_total)
            captured = _delta(self._last_captured, captured_total)
            self._last_delivered, self._last_captured = delivered_total, captured_total
            point = Point(at=at, pending=pending, delivered=delivered, captured=captured)
            self._points.append(point)
            return point

    def points(self) -> list[Point]:
        """Return the points, oldest first."""
        with self._lock:
            return list(self._points)

    def to_json(self) -> list[dict[str, Any]]:
        """Return the points as JSON-ready dicts."""
        return [asdict(p) for p in self.points()]

    def load(self, data: Any) -> None:
        """Restore points saved by ``to_json`` (ignores anything malformed)."""
        if not isinstance(data, list):
            return
        with self._lock:
            for item in data:
                try:
                    self._points.append(
                        Point(float(item["at"]), int(item["pending"]), int(item["delivered"]), int(item["captured"]))
                    )
                except (KeyError, TypeError, ValueError):
                    continue


def _delta(last: int | None, total: int) -> int:
    if last is None:
        return 0
    return total - last if total >= last else total
