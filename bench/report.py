"""The benchmark table: rows, formatting of figures, and the Markdown rendering."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ("Benchmark", "Setting", "possync", "Limit/peer", "Ratio", "Target", "Met")
NONE = "—"


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    benchmark: str
    setting: str
    possync: str
    peer: str = NONE
    ratio: str = NONE
    target: str = NONE
    met: str = NONE

    def cells(self) -> tuple[str, ...]:
        """Return the row's cells in column order."""
        return (self.benchmark, self.setting, self.possync, self.peer, self.ratio, self.target, self.met)


def rate(value: float) -> str:
    """Format movements per second."""
    return f"{value:,.0f}/s"


def percent(value: float) -> str:
    """Format a ratio as a percentage."""
    return f"{value * 100:.0f}%"


def seconds(value: float) -> str:
    """Format a duration in seconds with two decimals, or milliseconds below 0.1 s."""
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value:.2f} s"


def met(ok: bool, why: str = "") -> str:
    """Format whether a target was met (with what missed, if anything)."""
    return "yes" if ok else f"**no**{f' ({why})' if why else ''}"


def render(rows: list[Row], notes: list[str]) -> str:
    """Return the Markdown table with its notes beneath."""
    widths = [max(len(c), *(len(r.cells()[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = [_line(COLUMNS, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_line(r.cells(), widths) for r in rows]
    lines.append("")
    lines += [f"{n}. {note}" for n, note in enumerate(notes, 1)]
    return "\n".join(lines)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    """Return one Markdown table line, cells padded to ``widths``."""
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
