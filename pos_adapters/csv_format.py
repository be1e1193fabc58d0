"""CSV POS exports: a configurable column mapping from the file's header to POS line fields.

Invariants:
- The header decides: a mapped column missing from it makes the whole file malformed (nothing is
  read); extra columns are ignored; column order does not matter.
- A row that cannot be read becomes a capture issue naming the file and row; the rows around it
  are still captured.
- Rows are read as a stream and handed out in chunks, so file size does not drive memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.domain import CaptureIssue, Kind, Movement
from pos_adapters.base import SourceContext
from pos_adapters.lines import PosLine, normalize_line

FIELDS = (
    "pos_transaction_id",
    "line_no",
    "occurred_at",
    "business_day",
    "terminal_id",
    "kind",
    "item",
    "quantity",
    "unit",
    "unit_price",
    "currency",
    "counterpart_location",
    "disposition",
    "location",
)
REQUIRED = ("pos_transaction_id", "occurred_at", "item", "quantity")
MAX_FIELD = 64 * 1024


class MalformedFile(ValueError):
    """The file as a whole cannot be read; the message says why in words."""


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How to read one POS's CSV export."""

    columns: Mapping[str, str]
    kinds: Mapping[str, str] = field(default_factory=dict)
    default_kind: str | None = None
    encoding: str = "utf-8-sig"
    delimiter: str = ","


@dataclass(slots=True)
class Chunk:
    """Movements and issues from consecutive rows; ``rows`` counts data rows read so far."""

    movements: list[Movement]
    issues: list[CaptureIssue]
    rows: int


def read_csv(
    path: Path,
    layout: CsvLayout,
    ctx: SourceContext,
    *,
    source: str,
    chunk_rows: int = 2000,
) -> Iterator[Chunk]:
    """Yield chunks of the file's movements and issues; raise ``MalformedFile`` if unreadable."""
    csv.field_size_limit(MAX_FIELD)
    try:
        with open(path, newline="", encoding=layout.encoding) as handle:
            reader = csv.reader(handle, delimiter=layout.delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise MalformedFile("the file is empty (no header row)") from None
            index = _header_index(header, layout)
            yield from _rows(reader, index, layout, ctx, source, path.name, chunk_rows)
    except UnicodeDecodeError as exc:
        raise MalformedFile(
            f"the file is not valid {layout.encoding} text (byte {exc.start}: {exc.reason}); "
            "set 'encoding' on the source to the POS's export encoding (for example 'cp1252')"
        ) from None
    except csv.Error as exc:
        raise MalformedFile(f"the file is not readable as CSV: {exc}") from None


def _header_index(header: list[str], layout: CsvLayout) -> dict[str, int]:
    names = [h.strip() for h in header]
    positions = {name: i for i, name in reversed(list(enumerate(names)))}
    index: dict[str, int] = {}
    missing = []
    for target, column in layout.columns.items():
        if column in positions:
            index[target] = positions[column]
        else:
            missing.append(f"'{column}' (for {target})")
    if missing:
        raise MalformedFile(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; the header has: "
            f"{', '.join(names)[:500]}. Fix the export or the [sources.columns] mapping, then put "
            "the file back in the inbox."
        )
    return index


def _rows(
    reader: Iterator[list[str]],
    index: Mapping[str, int],
    layout: CsvLayout,
    ctx: SourceContext,
    source: str,
    file_name: str,
    chunk_rows: int,
) -> Iterator[Chunk]:
    kinds = {k.strip().upper(): v for k, v in layout.kinds.items()}
    occurrences: dict[str, int] = {}
    chunk = Chunk([], [], 0)
    for row_number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        chunk.rows += 1
        ref = f"{file_name} row {row_number}"

        def get(name: str, row: list[str] = row) -> str:
            position = index.get(name)
            return row[position].strip() if position is not None and position < len(row) else ""

        txn = get("pos_transaction_id")
        if "line_no" in index:
            line_no: object = get("line_no")
        else:
            occurrences[txn] = occurrences.get(txn, 0) + 1
            line_no = occurrences[txn]
        line = PosLine(
            pos_transaction_id=txn,
            line_no=line_no,
            occurred_at=get("occurred_at"),
            kind=_kind(get("kind"), kinds, layout.default_kind),
            item=get("item"),
            quantity=get("quantity"),
            unit=get("unit") or None,
            terminal_id=get("terminal_id") or None,
            business_day=get("business_day") or None,
            unit_price=get("unit_price") or None,
            currency=get("currency") or None,
            counterpart_location=get("counterpart_location") or None,
            disposition=get("disposition") or None,
            location=get("location") or None,
        )
        raw = layout.delimiter.join(row)
        result = normalize_line(line, ctx, source=source, source_ref=ref, raw=raw)
        if isinstance(result, Movement):
            chunk.movements.append(result)
        elif isinstance(result, CaptureIssue):
            chunk.issues.append(result)
        if chunk.rows % chunk_rows == 0:
            yield chunk
            chunk = Chunk([], [], chunk.rows)
    yield chunk


def _kind(raw: str, kinds: Mapping[str, str], default: str | None) -> str:
    if not raw:
        return default or ""
    if kinds:
        return kinds.get(raw.upper(), raw)
    lowered = raw.lower()
    return lowered if lowered in {k.value for k in Kind} else raw
