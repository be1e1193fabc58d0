"""CSV POS exports: a configurable column mapping (or a preset) from the file's header to POS line fields.

Invariants:
- The header decides: a mapped column missing from it makes the whole file malformed (nothing is
  read); extra columns are ignored; column order does not matter.
- A row that cannot be read becomes a capture issue naming the file and row (the row as a
  spreadsheet counts it: the header is row 1, a quoted field with line breaks stays one row); the
  rows around it are still captured.
- Rows are read as a stream and handed out in chunks, so file size does not drive memory (a
  layout without line numbers keeps one small counter per transaction).
- With ``decimal_comma``, quantities and prices are read with ``,`` as the decimal mark; without
  it a comma in a number is an error, never a guess.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.domain import CaptureIssue, Kind, Movement, make_issue_id
from pos_adapters.base import SourceContext
from pos_adapters.csv_presets import PRESETS, PresetOptions, PresetState, parse_number
from pos_adapters.lines import LineError, PosLine, normalize_line
from pos_adapters.reading import Chunk, MalformedFile

__all__ = ["FIELDS", "REQUIRED", "Chunk", "CsvLayout", "CsvRows", "MalformedFile", "read_csv"]

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


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How to read one POS's CSV export."""

    columns: Mapping[str, str]
    kinds: Mapping[str, str] = field(default_factory=dict)
    default_kind: str | None = None
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    preset: str | None = None
    decimal_comma: bool = False


def read_csv(
    path: Path,
    layout: CsvLayout,
    ctx: SourceContext,
    *,
    source: str,
    chunk_rows: int = 2000,
    name: str | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of the file's movements and issues; raise ``MalformedFile`` if unreadable.

    ``name`` is how the file is named in source references (default: its file name).
    """
    csv.field_size_limit(MAX_FIELD)
    try:
        with open(path, newline="", encoding=layout.encoding) as handle:
            reader = csv.reader(handle, delimiter=layout.delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise MalformedFile("the file is empty (no header row)") from None
            rows = CsvRows(header, layout, ctx, source=source)
            yield from _rows(reader, rows, name or path.name, chunk_rows)
    except UnicodeDecodeError as exc:
        raise MalformedFile(
            f"the file is not valid {layout.encoding} text (byte {exc.start}: {exc.reason}); "
            "set 'encoding' on the source to the POS's export encoding (for example 'cp1252')"
        ) from None
    except csv.Error as exc:
        raise MalformedFile(f"the file is not readable as CSV: {exc}") from None


def _header_index(header: list[str], layout: CsvLayout) -> dict[str, int]:
    names = [h.strip() for h in header]
    if layout.preset is not None:
        preset = PRESETS[layout.preset]
        found, absent = preset.resolve(names)
        if absent:
            raise MalformedFile(
                f"this is not a {preset.title} file as preset '{preset.name}' reads it: no column "
                f"{'; no column '.join(absent)}. The header has: {', '.join(names)[:500]}"
            )
        return found
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


class CsvRows:
    """Turns the rows of one CSV file into movements or issues, given its header row."""

    def __init__(self, header: list[str], layout: CsvLayout, ctx: SourceContext, *, source: str) -> None:
        """Resolve the header against the layout; raise ``MalformedFile`` if a needed column is missing."""
        self.index = _header_index(header, layout)
        self.layout = layout
        self.ctx = ctx
        self.source = source
        self.kinds = {k.strip().upper(): v for k, v in layout.kinds.items()}
        self.preset = PRESETS[layout.preset] if layout.preset else None
        self.options = PresetOptions(timezone=ctx.timezone, decimal_comma=layout.decimal_comma)
        self.state = PresetState()
        self.has_line_no = "line_no" in self.index

    def convert(self, row: list[str], ref: str) -> Movement | CaptureIssue | None:
        """Return the row's movement, the issue that stops it, or None if it moves nothing."""
        index = self.index

        def get(name: str) -> str:
            position = index.get(name)
            return row[position].strip() if position is not None and position < len(row) else ""

        raw = self.layout.delimiter.join(row)
        if self.preset is not None:
            try:
                line = self.preset.make_line(get, self.state, self.options)
            except LineError as exc:
                return _row_issue(exc, self.source, ref, raw, get("transaction_id") or get("name"))
        else:
            line = _mapped_line(get, self.has_line_no, self.state, self.kinds, self.layout)
        if line is None:
            return None
        return normalize_line(line, self.ctx, source=self.source, source_ref=ref, raw=raw)


def _rows(
    reader: Iterator[list[str]],
    rows: CsvRows,
    file_name: str,
    chunk_rows: int,
) -> Iterator[Chunk]:
    chunk = Chunk([], [], 0)
    for row_number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        chunk.rows += 1
        result = rows.convert(row, f"{file_name} row {row_number}")
        if isinstance(result, Movement):
            chunk.movements.append(result)
        elif isinstance(result, CaptureIssue):
            chunk.issues.append(result)
        if chunk.rows % chunk_rows == 0:
            yield chunk
            chunk = Chunk([], [], chunk.rows)
    yield chunk


def _mapped_line(
    get: Callable[[str], str], has_line_no: bool, state: PresetState, kinds: Mapping[str, str], layout: CsvLayout
) -> PosLine:
    txn = get("pos_transaction_id")
    line_no: object = get("line_no") if has_line_no else state.next_line(txn)
    return PosLine(
        pos_transaction_id=txn,
        line_no=line_no,
        occurred_at=get("occurred_at"),
        kind=_kind(get("kind"), kinds, layout.default_kind),
        item=get("item"),
        quantity=_number(get("quantity"), "quantity", layout),
        unit=get("unit") or None,
        terminal_id=get("terminal_id") or None,
        business_day=get("business_day") or None,
        unit_price=_number(get("unit_price"), "unit price", layout),
        currency=get("currency") or None,
        counterpart_location=get("counterpart_location") or None,
        disposition=get("disposition") or None,
        location=get("location") or None,
    )


def _number(text: str, what: str, layout: CsvLayout) -> object:
    """Turn a decimal-comma number into Decimal; leave anything else for ``normalize_line`` to judge."""
    if not layout.decimal_comma or not text:
        return text
    try:
        return parse_number(text, what, decimal_comma=True)
    except LineError:
        return text


def _row_issue(exc: LineError, source: str, ref: str, raw: str, txn: str) -> CaptureIssue:
    return CaptureIssue(
        issue_id=make_issue_id(source, ref),
        source=source,
        source_ref=ref,
        code=exc.code,
        message=str(exc),
        pos_transaction_id=txn or None,
        raw=raw,
    )


def _kind(raw: str, kinds: Mapping[str, str], default: str | None) -> str:
    if not raw:
        return default or ""
    if kinds:
        return kinds.get(raw.upper(), raw)
    lowered = raw.lower()
    return lowered if lowered in {k.value for k in Kind} else raw
