"""Capped exponential backoff with full jitter.

Invariants: the delay is never negative, never above ``cap_s``, and a server's ``Retry-After``
is honoured (but also capped, so a hostile or broken server cannot park delivery for a day).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay policy for retrying after transient failures."""

    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Return seconds to wait before attempt number ``attempt + 1`` (``attempt`` >= 1)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.cap_s)
        ceiling = min(self.cap_s, self.base_s * (2 ** min(max(attempt - 1, 0), 30)))
        # Full jitter, but never below a tenth of the ceiling, so a storm cannot form at zero delay.
        return (rng or random).uniform(ceiling / 10, ceiling)
