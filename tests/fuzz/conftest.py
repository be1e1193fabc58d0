"""Print how many hostile inputs each parser was given (the figures docs/reliability.md quotes)."""

from __future__ import annotations

from typing import Any

from tests.fuzz._support import EXAMPLES, Counter


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Add a table of inputs tried per parser to the pytest summary."""
    if not Counter.tried:
        return
    terminalreporter.section(f"hostile inputs tried per parser (at least {EXAMPLES} each)")
    for parser, count in sorted(Counter.tried.items()):
        terminalreporter.write_line(f"{parser:<28} {count:>8,}")
