"""Backoff: capped exponential growth with full jitter, Retry-After honoured but capped."""

import random

from outbox.backoff import Backoff


def test_delays_grow_exponentially_within_jitter_bounds_and_stop_at_the_cap() -> None:
    backoff, rng = Backoff(base_s=1.0, cap_s=60.0), random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0), (10**6, 60.0)]:
        delays = [backoff.delay(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 10 <= d <= ceiling for d in delays), attempt
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.4, "jitter spreads the retries"


def test_retry_after_is_honoured_but_capped_and_a_negative_one_ignored() -> None:
    backoff = Backoff(base_s=1.0, cap_s=300.0)
    assert backoff.delay(1, retry_after=42.0) == 42.0
    assert backoff.delay(1, retry_after=86_400.0) == 300.0  # a broken server cannot park delivery for a day
    assert 0.1 <= backoff.delay(1, retry_after=-5.0) <= 1.0
    assert backoff.delay(0) >= 0.1  # attempt 0 is treated as the first
