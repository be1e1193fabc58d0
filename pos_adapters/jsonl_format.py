"""JSON lines: one POS transaction JSON document (DESIGN.md) per line, read as a stream.

Invariants:
- Each line is parsed on its own by ``transactions.parse_transactions`` (non-strict): a line that
  is not UTF-8, not JSON, or not a transaction becomes a capture issue naming the file and line,
  with the raw text; the other lines are still captured.
- Lines are bounded (``max_line_bytes``): a longer line is reported and skipped, never buffered whole.
- Blank lines are skipped; a UTF-8 byte order mark at the start of the file and CR before LF are
  tolerated. Numbers are read as decimals, never binary floats.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from agent.domain import CaptureIssue, make_issue_id
from pos_adapters.base import SourceContext
from pos_adapters.reading import Chunk
from pos_adapters.transactions import ParsedTransactions, TransactionsInvalid, parse_transactions

MAX_LINE_BYTES = 1 << 20


class LineTooLong:
    """Marks a line that exceeded the bound; ``length`` is how many bytes it had (at least)."""

    def __init__(self, length: int, head: bytes) -> None:
        """Keep the length and the first bytes, for the issue."""
        self.length = length
        self.head = head


def bounded_lines(handle: BinaryIO, max_line_bytes: int) -> Iterator[bytes | LineTooLong]:
    """Yield complete lines (without the newline) or ``LineTooLong`` markers; a last line without newline too."""
    while True:
        line = handle.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            head, length = line[:200], len(line)
            while line and not line.endswith(b"\n"):
                line = handle.readline(1 << 16)
                length += len(line)
            yield LineTooLong(length, head)
            continue
        yield line.rstrip(b"\n").rstrip(b"\r")


def parse_json_line(
    data: bytes, ctx: SourceContext, *, source: str, source_ref: str, first: bool = False
) -> ParsedTransactions:
    """Turn one line of JSON text into movements, post-voids and issues (never raises for bad input)."""
    if first:
        data = data.removeprefix(b"\xef\xbb\xbf")
    result = ParsedTransactions()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.issues.append(
            _issue(source, source_ref, "BAD_ENCODING", f"not valid UTF-8 text (byte {exc.start + 1})", data)
        )
        return result
    try:
        obj = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        result.issues.append(_issue(source, source_ref, "BAD_JSON", f"not valid JSON: {exc}"[:300], data))
        return result
    try:
        return parse_transactions(obj, ctx, source=source, source_ref=source_ref)
    except TransactionsInvalid as exc:
        for error in exc.errors:
            result.issues.append(_issue(source, source_ref, error.code, str(error), data, key=error.path))
        return result


def _issue(source: str, ref: str, code: str, message: str, data: bytes, key: str = "") -> CaptureIssue:
    return CaptureIssue(
        issue_id=make_issue_id(source, f"{ref}\x1f{key}"),
        source=source,
        source_ref=ref,
        code=code,
        message=message,
        raw=data[:4000].decode("utf-8", "replace"),
    )


def read_jsonl(
    path: Path,
    ctx: SourceContext,
    *,
    source: str,
    chunk_rows: int = 2000,
    name: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Chunk]:
    """Yield chunks of the file's movements, post-voids and issues, line by line."""
    file_name = name or path.name
    chunk = Chunk([], [], 0)
    with open(path, "rb") as handle:
        for number, line in enumerate(bounded_lines(handle, max_line_bytes), start=1):
            chunk.rows = number
            ref = f"{file_name} line {number}"
            if isinstance(line, LineTooLong):
                chunk.issues.append(
                    _issue(
                        source,
                        ref,
                        "LINE_TOO_LONG",
                        f"the line is {line.length:,} bytes, over the limit of {max_line_bytes:,}; it was skipped",
                        line.head,
                    )
                )
            elif line.strip():
                parsed = parse_json_line(line, ctx, source=source, source_ref=ref, first=number == 1)
                chunk.movements += parsed.movements
                chunk.voids += parsed.voids
                chunk.issues += parsed.issues
            if chunk.size >= chunk_rows:
                yield chunk
                chunk = Chunk([], [], number)
    yield chunk
