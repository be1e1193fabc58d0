"""``journal``: tail an append-only POS journal file (JSON lines, or CSV with a header line).

The cursor is the file's identity (device, inode, and a SHA-256 of its first consumed bytes, up to
1 KiB) plus the byte offset after the last complete line that was stored and the line count; it is
stored in the same outbox transaction as the movements of those lines.

Invariants:
- Only complete lines (ending in a newline) are read from the live file; a half-written last line
  waits until the POS finishes it. In a file that was rotated away, a last line without newline is
  read once the POS has had ``settle`` to finish it (at start-up, at once).
- Restart: the stored cursor names the file and offset; reading resumes there, nothing is read
  twice and nothing is skipped. If the live file is no longer that file (rotated: renamed and a new
  one started, or copied and truncated), the rest of the old file is found among the rotated files
  (``rotated_pattern``, by inode or by content) and finished first, then any file rotated after it,
  then the new live file from its start.
- Truncation in place (the file got shorter, or its first bytes changed) starts the file again
  from offset 0 after finishing a rotated copy if one exists. A gap that cannot be recovered (the
  old file is gone) is an exception people see, never silence.
- Every line becomes movements through the same parsers as files (``transactions`` for JSON lines,
  ``csv_format`` for CSV); event ids come from the POS data, so a line read twice changes nothing.
- Folder events (watchdog) only wake the loop; the poll every ``poll_every`` is the truth.
- On Windows the file is not held open between polls (it would block the POS's rotation); each poll
  finds the file again from the stored cursor, by the same rules as a restart.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agent.domain import CaptureIssue, Cursor, Kind, Movement, PostVoid, make_issue_id, parse_duration
from pos_adapters.base import (
    Batch,
    BatchSink,
    CaptureRefused,
    SourceContext,
    SourceHealth,
    SourceSettings,
    SubmitResult,
    register,
)
from pos_adapters.csv_format import FIELDS, REQUIRED, CsvLayout, CsvRows
from pos_adapters.jsonl_format import parse_json_line
from pos_adapters.reading import MalformedFile, display_name

log = logging.getLogger("possync.source.journal")
Duration = Annotated[float, BeforeValidator(parse_duration)]
CURSOR_KEY = "journal"
HEAD_BYTES = 1024
BLOCK = 1 << 16
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


class JournalSettings(SourceSettings):
    """``[[sources]]`` with ``kind = "journal"``."""

    kind: Literal["journal"] = "journal"
    path: str
    format: Literal["jsonl", "csv"] = "jsonl"
    rotated_pattern: str | None = None
    start_at: Literal["beginning", "end"] = "beginning"
    poll_every: Duration = 1.0
    settle: Duration = 2.0
    max_line_kb: int = Field(1024, ge=1, le=65536)
    chunk_rows: int = Field(500, ge=1, le=100_000)
    columns: dict[str, str] = Field(default_factory=dict)
    kinds: dict[str, str] = Field(default_factory=dict)
    default_kind: Kind | None = None
    encoding: str = "utf-8-sig"
    delimiter: str = Field(",", min_length=1, max_length=1)
    decimal_comma: bool = False

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; mappable fields: {', '.join(FIELDS)}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"{value!r} is not a text encoding Python knows (try 'utf-8-sig' or 'cp1252')") from None
        return value

    @model_validator(mode="after")
    def _format_keys(self) -> JournalSettings:
        if self.format == "csv":
            missing = [f for f in (*REQUIRED, "line_no") if f not in self.columns]
            if missing:
                raise ValueError(
                    f"[sources.columns] must map {', '.join(missing)} for a CSV journal (a journal is read "
                    "across restarts, so its lines must carry their own line numbers)"
                )
            if "kind" not in self.columns and self.default_kind is None:
                raise ValueError("map the 'kind' column in [sources.columns] or set default_kind")
        elif self.columns or self.kinds or self.default_kind is not None:
            raise ValueError("columns, kinds and default_kind apply to format = 'csv' only")
        return self


@dataclass
class _Reading:
    """A journal file being read: its open handle, identity and how far it is consumed."""

    handle: BinaryIO
    path: Path
    dev: int
    ino: int
    offset: int = 0
    line: int = 0
    csv_rows: CsvRows | None = None
    skipping: bool = False
    head_len: int = 0
    head: str = ""

    @property
    def name(self) -> str:
        """The file's name as people see it."""
        return display_name(self.path.name)


class _Events(FileSystemEventHandler):
    def __init__(self, source: JournalSource) -> None:
        self.source = source

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.source.wake()


class JournalSource:
    """Tails one journal file across restarts, rotations and truncations."""

    def __init__(self, settings: JournalSettings, ctx: SourceContext) -> None:
        """Resolve the path against the config file's folder; nothing is opened yet."""
        self.name = settings.name
        self.settings = settings
        self.ctx = ctx
        self.health = SourceHealth()
        self.path = (ctx.base_dir / settings.path).resolve()
        self.rotated_pattern = settings.rotated_pattern or f"{self.path.name}.*"
        self.layout = CsvLayout(
            columns=settings.columns,
            kinds=settings.kinds,
            default_kind=settings.default_kind.value if settings.default_kind else None,
            encoding=settings.encoding,
            delimiter=settings.delimiter,
            decimal_comma=settings.decimal_comma,
        )
        self.max_line = settings.max_line_kb * 1024
        self.current: _Reading | None = None
        self._rotated_at: float | None = None
        self._wake = threading.Event()
        # Windows refuses to rename a file another process holds open, which would stop the POS from
        # rotating its journal: there the file is opened for each poll and found again by the cursor.
        self.keep_open = os.name != "nt"

    def wake(self) -> None:
        """Ask the loop to look at the file now."""
        self._wake.set()

    # -- loop --------------------------------------------------------------------------------

    def run(self, sink: BatchSink, stop: threading.Event) -> None:
        """Tail until ``stop`` is set."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        observer: Any = Observer()
        try:
            observer.schedule(_Events(self), str(self.path.parent), recursive=False)
            observer.start()
        except OSError as exc:
            log.warning("%s: folder events unavailable (%s); polling only", self.name, exc)
            observer = None
        self.health.state = "ok"
        try:
            while not stop.is_set():
                try:
                    self.poll(sink)
                except CaptureRefused as exc:
                    self.health.state, self.health.last_error = "error", f"could not store: {exc}"
                    log.error("%s: could not store lines, will retry: %s", self.name, exc)
                    self.close()
                    stop.wait(5.0)
                except OSError as exc:
                    self.health.state, self.health.last_error = "error", f"{exc.strerror or exc}"
                    log.error("%s: could not read %s, will retry: %s", self.name, display_name(str(self.path)), exc)
                    self.close()
                    stop.wait(5.0)
                except Exception as exc:  # a defect must not end the source's thread; resume from the cursor
                    self.health.state, self.health.last_error = "error", f"unexpected error: {exc}"
                    log.exception("%s: unexpected error, will retry from the stored cursor", self.name)
                    self.close()
                    stop.wait(30.0)
                self._wake.wait(timeout=self.settings.poll_every)
                self._wake.clear()
        finally:
            self.close()
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    def close(self) -> None:
        """Close the open file (the stored cursor says where to resume)."""
        if self.current is not None:
            self.current.handle.close()
            self.current = None

    def poll(self, sink: BatchSink, *, now: float | None = None) -> None:
        """Read every complete new line, following rotation and truncation; submit them in batches."""
        try:
            self._poll(sink, time.monotonic() if now is None else now)
        finally:
            if not self.keep_open:
                self.close()

    def _poll(self, sink: BatchSink, now: float) -> None:
        if self.current is None:
            self.current = self._resume(sink)
            if self.current is None:
                return
        reading = self.current
        mine = os.fstat(reading.handle.fileno())
        if mine.st_size < reading.offset or (
            reading.head_len and _head_sha(reading.handle, reading.head_len) != reading.head
        ):
            # Checked before reading on: bytes past the old offset of a rewritten file are not news.
            log.warning("%s: %s was truncated or rewritten; reading it again from its start", self.name, reading.name)
            self.close()
            self.current = self._resume(sink)
            if self.current is None:
                return
            reading = self.current
        self._drain(reading, sink, final=False)
        try:
            live = self.path.stat()
        except FileNotFoundError:
            live = None
        if live is None or (live.st_dev, live.st_ino) != (reading.dev, reading.ino):
            # Rotated away. The POS may still write to it until it reopens: keep reading it for
            # ``settle``, then take a last unfinished line as it is and switch to the new file.
            self._rotated_at = self._rotated_at if self._rotated_at is not None else now
            if now - self._rotated_at < self.settings.settle:
                return
            self._drain(reading, sink, final=True)
            self.close()
            self._rotated_at = None
            log.info("%s: %s was rotated; now reading the new %s", self.name, reading.name, self.path.name)
            self.current = self._open(self.path)
            if self.current is not None:
                self._save(sink, self.current)
                self._drain(self.current, sink, final=False)
            return
        self._rotated_at = None

    # -- where to resume ---------------------------------------------------------------------

    def _resume(self, sink: BatchSink) -> _Reading | None:
        """Open the live file, after finishing whatever the stored cursor says is unfinished elsewhere."""
        stored = sink.cursor(CURSOR_KEY)
        live = self._open(self.path)
        if stored is None:
            if live is not None and self.settings.start_at == "end":
                live.offset = self._end_of_complete_lines(live)
                live.line = _count_lines(live.handle, live.offset)
                self._save(sink, live)
            return live
        if live is not None and self._same(live, stored):
            self._position(live, stored)
            return live
        old = self._find_rotated(stored)
        if old is not None:
            self._position(old, stored)
            old_mtime = os.fstat(old.handle.fileno()).st_mtime_ns
            self._drain(old, sink, final=True)
            old.handle.close()
            for later in self._rotated_after(old_mtime, exclude=(old.dev, old.ino)):
                self._drain(later, sink, final=True)
                later.handle.close()
        elif live is not None and int(stored.get("offset", 0)) > 0:
            if (live.dev, live.ino) == (stored.get("dev"), stored.get("ino")):
                log.warning(
                    "%s: %s is shorter than what was read from it (truncated); reading it from its start",
                    self.name,
                    live.name,
                )
            else:
                self._gap(sink, stored)
        if live is not None:
            self._save(sink, live)
        return live

    def _open(self, path: Path) -> _Reading | None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open while the file is tailed
        except FileNotFoundError:
            return None
        stat = os.fstat(handle.fileno())
        return _Reading(handle=handle, path=path, dev=stat.st_dev, ino=stat.st_ino)

    def _same(self, reading: _Reading, stored: dict[str, Any]) -> bool:
        """Return True if ``reading`` holds the stored file's content up to the stored offset."""
        size = os.fstat(reading.handle.fileno()).st_size
        return size >= int(stored.get("offset", 0)) and self._head_matches(reading.handle, stored)

    @staticmethod
    def _head_matches(handle: BinaryIO, stored: dict[str, Any]) -> bool:
        length = int(stored.get("head_len", 0))
        if length == 0:
            return True
        return _head_sha(handle, length) == stored.get("head")

    def _position(self, reading: _Reading, stored: dict[str, Any]) -> None:
        reading.offset = int(stored.get("offset", 0))
        reading.line = int(stored.get("line", 0))
        reading.head_len = int(stored.get("head_len", 0))
        reading.head = str(stored.get("head", ""))
        reading.handle.seek(reading.offset)

    def _rotated_files(self) -> Iterator[Path]:
        try:
            entries = list(os.scandir(self.path.parent))
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            if name == self.path.name or name.lower().endswith(COMPRESSED):
                continue
            if fnmatch.fnmatch(name, self.rotated_pattern) and entry.is_file(follow_symlinks=False):
                yield Path(entry.path)

    def _find_rotated(self, stored: dict[str, Any]) -> _Reading | None:
        """Find the stored file among the rotated ones: same inode first, else same content (a copy)."""
        candidates = [r for r in (self._open(p) for p in self._rotated_files()) if r is not None]
        same_inode = [r for r in candidates if (r.dev, r.ino) == (stored.get("dev"), stored.get("ino"))]
        found = next((r for r in [*same_inode, *candidates] if self._same(r, stored)), None)
        for r in candidates:
            if r is not found:
                r.handle.close()
        return found

    def _rotated_after(self, mtime_ns: int, exclude: tuple[int, int]) -> list[_Reading]:
        """Rotated files last written after ``mtime_ns`` (unread: rotated while possync was away), oldest first."""
        later = []
        for path in self._rotated_files():
            reading = self._open(path)
            if reading is None:
                continue
            stat = os.fstat(reading.handle.fileno())
            if (reading.dev, reading.ino) != exclude and stat.st_mtime_ns > mtime_ns:
                later.append((stat.st_mtime_ns, reading))
            else:
                reading.handle.close()
        return [r for _, r in sorted(later, key=lambda pair: pair[0])]

    def _gap(self, sink: BatchSink, stored: dict[str, Any]) -> None:
        name = str(stored.get("name", "the journal"))
        message = (
            f"{name} was rotated or replaced and its old content is no longer in the folder; lines written after "
            f"line {stored.get('line', 0)} of the old file (byte {stored.get('offset', 0)}) may not have been "
            "captured. Check the POS journal archive for that stretch."
        )
        log.error("%s: %s", self.name, message)
        issue = CaptureIssue(
            issue_id=make_issue_id(
                self.name, f"gap\x1f{stored.get('dev')}\x1f{stored.get('ino')}\x1f{stored.get('head')}"
            ),
            source=self.name,
            source_ref=f"{name} after line {stored.get('line', 0)}",
            code="JOURNAL_GAP",
            message=message,
        )
        sink.submit(Batch(issues=[issue]))

    # -- reading lines -----------------------------------------------------------------------

    def _end_of_complete_lines(self, reading: _Reading) -> int:
        size = os.fstat(reading.handle.fileno()).st_size
        start = max(size - BLOCK, 0)
        reading.handle.seek(start)
        tail = reading.handle.read(size - start)
        cut = tail.rfind(b"\n")
        return start + cut + 1 if cut >= 0 else start

    def _drain(self, reading: _Reading, sink: BatchSink, *, final: bool) -> None:
        """Read complete lines from the reading's offset to the end, submitting a batch every ``chunk_rows``."""
        reading.handle.seek(reading.offset)
        buffer = b""
        batch = _Pending()
        while True:
            block = reading.handle.read(BLOCK)
            if not block:
                break
            buffer += block
            start = 0
            while True:
                cut = buffer.find(b"\n", start)
                if cut < 0:
                    break
                self._line(reading, buffer[start:cut], cut + 1 - start, batch)
                start = cut + 1
                if batch.lines >= self.settings.chunk_rows:
                    self._flush(sink, reading, batch)
                    batch = _Pending()
            buffer = buffer[start:]
            if len(buffer) > self.max_line:
                self._too_long(reading, len(buffer), buffer[:200], batch)
                buffer = b""
        if final and buffer:
            self._line(reading, buffer, len(buffer), batch)
        if batch.lines or batch.issues:
            self._flush(sink, reading, batch)

    def _line(self, reading: _Reading, data: bytes, consumed: int, batch: _Pending) -> None:
        reading.offset += consumed
        batch.lines += 1
        if reading.skipping:
            reading.skipping = False  # the rest of an over-long line
            return
        reading.line += 1
        ref = f"{reading.name} line {reading.line}"
        data = data.rstrip(b"\r")
        if len(data) > self.max_line:
            message = f"the line is {len(data):,} bytes, over the limit of {self.max_line:,}; it was skipped"
            batch.issues.append(self._issue(ref, "LINE_TOO_LONG", message, data[:200]))
            return
        if not data.strip():
            return
        if self.settings.format == "jsonl":
            parsed = parse_json_line(data, self.ctx, source=self.name, source_ref=ref, first=reading.line == 1)
            batch.movements += parsed.movements
            batch.voids += parsed.voids
            batch.issues += parsed.issues
            return
        self._csv_line(reading, data, ref, batch)

    def _csv_line(self, reading: _Reading, data: bytes, ref: str, batch: _Pending) -> None:
        try:
            text = data.decode(self.settings.encoding)
        except UnicodeDecodeError as exc:
            batch.issues.append(
                self._issue(ref, "BAD_ENCODING", f"not valid {self.settings.encoding} text ({exc.reason})", data)
            )
            return
        row = next(csv.reader([text], delimiter=self.settings.delimiter), [])
        if reading.csv_rows is None:
            if reading.line == 1:
                try:
                    reading.csv_rows = CsvRows(row, self.layout, self.ctx, source=self.name)
                except MalformedFile as exc:
                    batch.issues.append(self._issue(ref, "BAD_HEADER", str(exc), data))
                return
            self._load_header(reading)
            if reading.csv_rows is None:
                batch.issues.append(
                    self._issue(ref, "BAD_HEADER", "the file's first line is not a usable header", data)
                )
                return
        result = reading.csv_rows.convert(row, ref)
        if isinstance(result, Movement):
            batch.movements.append(result)
        elif isinstance(result, CaptureIssue):
            batch.issues.append(result)

    def _load_header(self, reading: _Reading) -> None:
        """Read the header of a CSV journal resumed mid-file (its first line)."""
        position = reading.handle.tell()
        reading.handle.seek(0)
        first = reading.handle.readline(self.max_line)
        reading.handle.seek(position)
        try:
            row = next(
                csv.reader([first.decode(self.settings.encoding).rstrip("\r\n")], delimiter=self.settings.delimiter)
            )
            reading.csv_rows = CsvRows(row, self.layout, self.ctx, source=self.name)
        except (UnicodeDecodeError, StopIteration, MalformedFile):
            reading.csv_rows = None

    def _too_long(self, reading: _Reading, length: int, head: bytes, batch: _Pending) -> None:
        reading.offset += length
        reading.line += 1
        ref = f"{reading.name} line {reading.line}"
        batch.issues.append(
            self._issue(ref, "LINE_TOO_LONG", f"the line is over {self.max_line:,} bytes; it was skipped", head)
        )
        reading.skipping = True

    def _issue(self, ref: str, code: str, message: str, data: bytes) -> CaptureIssue:
        return CaptureIssue(
            issue_id=make_issue_id(self.name, ref),
            source=self.name,
            source_ref=ref,
            code=code,
            message=message,
            raw=data[:4000].decode("utf-8", "replace"),
        )

    def _cursor_of(self, reading: _Reading) -> dict[str, Any]:
        head_len = min(reading.offset, HEAD_BYTES)
        return {
            "dev": reading.dev,
            "ino": reading.ino,
            "head_len": head_len,
            "head": _head_sha(reading.handle, head_len) if head_len else "",
            "offset": reading.offset,
            "line": reading.line,
            "name": reading.name,
        }

    def _flush(self, sink: BatchSink, reading: _Reading, batch: _Pending) -> None:
        value = self._cursor_of(reading)
        cursor = Cursor(CURSOR_KEY, value)
        result = sink.submit(Batch(movements=batch.movements, issues=batch.issues, cursor=cursor, voids=batch.voids))
        reading.head_len, reading.head = value["head_len"], value["head"]
        self.health.state, self.health.last_error = "ok", None
        if batch.movements:
            self.health.captured += len(result.new)
            self.health.last_capture_at = time.time()

    def _save(self, sink: BatchSink, reading: _Reading) -> None:
        value = self._cursor_of(reading)
        sink.submit(Batch(cursor=Cursor(CURSOR_KEY, value)))
        reading.head_len, reading.head = value["head_len"], value["head"]


@dataclass
class _Pending:
    lines: int = 0
    movements: list[Movement] = field(default_factory=list)
    issues: list[CaptureIssue] = field(default_factory=list)
    voids: list[PostVoid] = field(default_factory=list)


def _count_lines(handle: BinaryIO, upto: int) -> int:
    handle.seek(0)
    count = 0
    remaining = upto
    while remaining > 0:
        block = handle.read(min(BLOCK, remaining))
        if not block:
            break
        count += block.count(b"\n")
        remaining -= len(block)
    handle.seek(upto)
    return count


def _head_sha(handle: BinaryIO, length: int) -> str:
    position = handle.tell()
    handle.seek(0)
    head = handle.read(length)
    handle.seek(position)
    return hashlib.sha256(head).hexdigest()


def build(settings: JournalSettings, ctx: SourceContext) -> JournalSource:
    """Build a journal source (the factory registered for ``kind = "journal"``)."""
    return JournalSource(settings, ctx)


def replay(settings: JournalSettings, ctx: SourceContext, path: Path) -> Iterator[Batch]:
    """Read one recorded journal file from start to end, yielding its batches (a last partial line included)."""
    source = JournalSource(settings, ctx)
    reading = source._open(path)
    if reading is None:
        return
    sink = _Collect()
    with reading.handle:
        source._drain(reading, sink, final=True)
    yield from (Batch(movements=b.movements, issues=b.issues, voids=b.voids) for b in sink.batches)


class _Collect:
    """A sink that only keeps what it is given (for replay)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def submit(self, batch: Batch) -> SubmitResult:
        self.batches.append(batch)
        return SubmitResult(new=[m.event_id for m in batch.movements], duplicates=[], held=[])

    def cursor(self, key: str) -> dict[str, Any] | None:
        return None

    def movements_of(self, pos_transaction_id: str) -> list[Movement]:
        return []


register("journal", JournalSettings, build, replay)
