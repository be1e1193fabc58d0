"""Shared pieces of the hostile-input tests: example counts, the hang bound, contexts and hostile values.

Every fuzz test runs at least ``EXAMPLES`` generated inputs per parser (1,000 by default; set
``POSSYNC_FUZZ_EXAMPLES`` for a longer soak). "No hang" is enforced, not hoped for: ``bounded``
arms a real-time interval timer (``SIGALRM``) around one parser call, so a parser that loops
raises ``Hang`` in the test thread after ``HANG_S`` seconds and the example fails with the input
that caused it. Inputs are also bounded in size, so a slow-but-finite parser shows as a failure
too, not as a test that merely takes long.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pos_adapters.base import SourceContext

EXAMPLES = max(int(os.environ.get("POSSYNC_FUZZ_EXAMPLES", "1000")), 1000)
HANG_S = float(os.environ.get("POSSYNC_FUZZ_HANG_S", "5"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
T = TypeVar("T")


class Hang(AssertionError):
    """A parser call took longer than ``HANG_S``: treated as a hang."""


@contextmanager
def bounded(what: str = "parser", seconds: float = HANG_S) -> Iterator[None]:
    """Raise ``Hang`` inside the block if it runs longer than ``seconds`` (main thread only)."""

    def alarm(_signum: int, _frame: Any) -> None:
        raise Hang(f"{what} did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_bounded(fn: Callable[[], T], what: str = "parser") -> T:
    """Run ``fn`` under ``bounded`` and return its result."""
    with bounded(what):
        return fn()


def context(folder: Path) -> SourceContext:
    """The source context every fuzz test uses (store S001, Chicago time)."""
    return SourceContext(
        store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=folder, data_dir=folder, location="S001"
    )


class Counter:
    """Counts inputs tried and how each ended, for the figures printed at the end of the session."""

    tried: dict[str, int] = {}  # noqa: RUF012 - a process-wide tally on purpose

    @classmethod
    def add(cls, parser: str) -> None:
        """Count one input tried against ``parser``."""
        cls.tried[parser] = cls.tried.get(parser, 0) + 1


# -- hostile values ------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "\ufeff",
    "\u202e",
    "NaN",
    "-NaN",
    "Infinity",
    "-inf",
    "1e999999999",
    "-1e-999999999",
    "9" * 400,
    "0x10",
    "1_000",
    "١٢٣",  # Arabic-Indic digits
    "\uff11\uff12",  # full-width digits
    "1,5",
    "1.5.5",
    "--1",
    "+-1",
    "2026-02-30T09:00:00",
    "2026-11-20T25:61:00",
    "99999-01-01T00:00:00",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59+14:00",
    "2026-11-20",
    "tomorrow",
    "'; DROP TABLE movement; --",
    "=cmd|' /C calc'!A0",
    "../../../etc/passwd",
    "C:\\Windows\\System32\\CON",
    "<script>alert(1)</script>",
    "%s%s%s%n",
    "{transaction}",
    "\r\n",
    '"',
    "a" * 70_000,
    "\udcff",  # a lone surrogate (what undecodable bytes become)
    "\U0001d7d8\U0001d7d9",  # double-struck digits
    "sale\x00",
    "SALE",
    "post_void",
]


def hostile_text() -> st.SearchStrategy[str]:
    """Hand-picked hostile strings mixed with arbitrary Unicode."""
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-compatible values (nested lists and objects)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text(),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(hostile_text(), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )
