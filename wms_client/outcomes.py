"""The one table that turns HTTP statuses and network errors into delivery outcomes.

| what happened                         | verdict                                   |
|---------------------------------------|-------------------------------------------|
| 2xx with a per-event result list      | each event's own result                   |
| 2xx, event missing or body unreadable | retry those events (the outcome is unknown; resending is safe) |
| 401, 403                              | pause delivery (credentials)              |
| 408, 425, 429, 5xx                    | retry the batch, honouring Retry-After    |
| 3xx                                   | retry (redirects are never followed: the token must not travel) |
| 413 and other 4xx                     | split the batch; a single event is rejected with the WMS's words |
| connect/read/write error, timeout     | retry the batch                           |
"""

from __future__ import annotations

from enum import StrEnum

from agent.domain import parse_retry_after

__all__ = ["RETRYABLE_4XX", "Verdict", "parse_retry_after", "verdict_for_status"]


class Verdict(StrEnum):
    """What to do with a whole batch after one HTTP exchange."""

    PER_EVENT = "per_event"
    RETRY = "retry"
    AUTH = "auth"
    SPLIT = "split"


RETRYABLE_4XX = frozenset({408, 425, 429})


def verdict_for_status(status: int) -> Verdict:
    """Classify an HTTP status for a batch push."""
    if 200 <= status < 300:
        return Verdict.PER_EVENT
    if status in (401, 403):
        return Verdict.AUTH
    if status in RETRYABLE_4XX or status >= 500 or 300 <= status < 400:
        return Verdict.RETRY
    return Verdict.SPLIT
