"""``file_drop``: POS export files dropped into a watched folder.

Invariants:
- Folder events (watchdog) are hints that wake a scan; the periodic rescan is the truth, so files
  present at start-up, renamed in, or missed by the OS are all found.
- A file is read only once it has settled: closed after its last write (where the OS reports it)
  or unchanged in size and time for ``settle``.
- A file is moved to ``archive`` only after every batch read from it is durable, and to
  ``quarantine`` (with ``<name>.reason.txt`` beside it) when it cannot be read; its bytes are never
  deleted or changed.
- A file's cursor is keyed by its SHA-256: a crash mid-file resumes after the last durable chunk,
  and the same file dropped again is recognised and changes nothing.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from agent.domain import Cursor, Kind, parse_duration
from pos_adapters.base import (
    Batch,
    BatchSink,
    CaptureRefused,
    SourceContext,
    SourceHealth,
    SourceSettings,
    register,
)
from pos_adapters.csv_format import FIELDS, REQUIRED, Chunk, CsvLayout, MalformedFile, read_csv

log = logging.getLogger("possync.source.file_drop")
Duration = Annotated[float, BeforeValidator(parse_duration)]
FORMATS = ("csv",)
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~", ".reason.txt")


class FileDropSettings(SourceSettings):
    """``[[sources]]`` with ``kind = "file_drop"``."""

    kind: Literal["file_drop"] = "file_drop"
    path: str
    pattern: str = "*.csv"
    format: str = "csv"
    archive: str | None = None
    quarantine: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    kinds: dict[str, str] = Field(default_factory=dict)
    default_kind: Kind | None = None
    encoding: str = "utf-8-sig"
    delimiter: str = Field(",", min_length=1, max_length=1)
    settle: Duration = 1.0
    rescan_every: Duration = 30.0
    max_file_mb: float = Field(200.0, gt=0)
    chunk_rows: int = Field(2000, ge=1, le=100_000)
    polling: bool = False

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(
                f"format {value!r} is not available in this version of possync (available: {', '.join(FORMATS)})"
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"{value!r} is not a text encoding Python knows (try 'utf-8-sig' or 'cp1252')") from None
        return value

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; mappable fields: {', '.join(FIELDS)}")
        return value

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        valid = {k.value for k in Kind}
        wrong = sorted(f"{pos}={kind}" for pos, kind in value.items() if kind not in valid)
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: a POS type maps to one of {', '.join(sorted(valid))}")
        return value

    @model_validator(mode="after")
    def _csv_needs_columns(self) -> FileDropSettings:
        if self.format == "csv":
            missing = [f for f in REQUIRED if f not in self.columns]
            if missing:
                raise ValueError(f"[sources.columns] must map {', '.join(missing)} for a CSV source")
            if "kind" not in self.columns and self.default_kind is None:
                raise ValueError("map the 'kind' column in [sources.columns] or set default_kind")
        return self


@dataclass
class _Seen:
    signature: tuple[int, int]
    since: float


class _Events(FileSystemEventHandler):
    """Turns folder events into wake-ups and per-file 'closed after last write' marks."""

    def __init__(self, source: FileDropSource) -> None:
        self.source = source

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        now = time.monotonic()
        kind = event.event_type
        if kind == "moved":
            name = Path(os.fsdecode(event.dest_path)).name
            self.source.mark(name, closed=now)
        elif kind in ("closed", "closed_no_write"):
            self.source.mark(Path(os.fsdecode(event.src_path)).name, closed=now)
        elif kind in ("created", "modified"):
            self.source.mark(Path(os.fsdecode(event.src_path)).name, written=now)
        else:
            return
        self.source.wake()


class FileDropSource:
    """Watches a folder and captures every settled file matching the pattern."""

    def __init__(self, settings: FileDropSettings, ctx: SourceContext) -> None:
        """Resolve folders against the config file's folder; nothing is touched on disk yet."""
        self.name = settings.name
        self.settings = settings
        self.ctx = ctx
        self.health = SourceHealth()
        self.inbox = (ctx.base_dir / settings.path).resolve()
        self.archive = (ctx.base_dir / settings.archive).resolve() if settings.archive else self.inbox / "done"
        self.quarantine_dir = (
            (ctx.base_dir / settings.quarantine).resolve() if settings.quarantine else self.inbox / "quarantine"
        )
        self.layout = CsvLayout(
            columns=settings.columns,
            kinds=settings.kinds,
            default_kind=settings.default_kind.value if settings.default_kind else None,
            encoding=settings.encoding,
            delimiter=settings.delimiter,
        )
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._written: dict[str, float] = {}
        self._closed: dict[str, float] = {}
        self._seen: dict[str, _Seen] = {}
        self._retry_at: dict[str, float] = {}

    # -- events ------------------------------------------------------------------------------

    def mark(self, name: str, *, written: float | None = None, closed: float | None = None) -> None:
        """Record a folder event for ``name``."""
        with self._lock:
            if written is not None:
                self._written[name] = written
            if closed is not None:
                self._closed[name] = closed

    def wake(self) -> None:
        """Ask the scan loop to look at the folder now."""
        self._wake.set()

    # -- loop --------------------------------------------------------------------------------

    def run(self, sink: BatchSink, stop: threading.Event) -> None:
        """Watch and scan until ``stop`` is set."""
        for folder in (self.inbox, self.archive, self.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        observer = self._start_observer()
        self.health.state = "ok"
        try:
            while not stop.is_set():
                next_check = self.scan(sink, stop)
                self._wake.wait(timeout=min(next_check, self.settings.rescan_every))
                self._wake.clear()
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    def _start_observer(self) -> Any:
        observer = PollingObserver(timeout=1.0) if self.settings.polling else Observer()
        try:
            observer.schedule(_Events(self), str(self.inbox), recursive=False)
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit: the rescan still finds every file
            log.warning(
                "%s: folder events unavailable (%s); relying on rescans every %.0f s",
                self.name,
                exc,
                self.settings.rescan_every,
            )
            return None
        return observer

    def scan(self, sink: BatchSink, stop: threading.Event) -> float:
        """Capture every settled file; return seconds until a waiting file should be checked."""
        now = time.monotonic()
        next_check = self.settings.rescan_every
        for path in self._candidates():
            if stop.is_set():
                break
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            seen = self._seen.get(path.name)
            if seen is None or seen.signature != signature:
                seen = self._seen[path.name] = _Seen(signature, now)
            if self._retry_at.get(path.name, 0.0) > now:
                next_check = min(next_check, self._retry_at[path.name] - now)
                continue
            wait = self._settle_wait(path.name, seen, now)
            if wait > 0:
                next_check = min(next_check, wait)
                continue
            self._capture(path, sink)
        return max(next_check, 0.05)

    def _candidates(self) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(self.inbox), key=lambda e: e.name)
        except FileNotFoundError:
            return
        pattern = self.settings.pattern
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES):
                continue
            if not fnmatch.fnmatch(name.lower(), pattern.lower()):
                continue
            if entry.is_file(follow_symlinks=False):
                yield Path(entry.path)

    def _settle_wait(self, name: str, seen: _Seen, now: float) -> float:
        with self._lock:
            closed = self._closed.get(name)
            written = self._written.get(name, 0.0)
        if closed is not None and closed >= written and closed <= now:
            return 0.0
        return self.settings.settle - (now - seen.since)

    # -- one file ----------------------------------------------------------------------------

    def _capture(self, path: Path, sink: BatchSink) -> None:
        name = path.name
        try:
            self._capture_file(path, sink)
        except MalformedFile as exc:
            self._quarantine(path, str(exc))
        except CaptureRefused as exc:
            self.health.state, self.health.last_error = "error", f"{name}: could not store: {exc}"
            log.error("%s: %s could not be stored, will retry in 30 s: %s", self.name, name, exc)
            self._retry_at[name] = time.monotonic() + 30.0
            return
        except FileNotFoundError:
            log.info("%s: %s disappeared before it was read", self.name, name)
        except OSError as exc:
            self.health.state, self.health.last_error = "error", f"{name}: {exc.strerror or exc}"
            log.error("%s: %s could not be read, will retry in 30 s: %s", self.name, name, exc)
            self._retry_at[name] = time.monotonic() + 30.0
            return
        self._forget(name)

    def _capture_file(self, path: Path, sink: BatchSink) -> None:
        size = path.stat().st_size
        limit = int(self.settings.max_file_mb * 1024 * 1024)
        if size > limit:
            raise MalformedFile(
                f"the file is {size / 1048576:.1f} MB, over this source's limit of "
                f"max_file_mb = {self.settings.max_file_mb:g}; split the export or raise the limit"
            )
        key = f"file:{_sha256(path)}"
        prior = sink.cursor(key) or {}
        if prior.get("done"):
            log.info("%s: %s was captured before (same content); archiving it again", self.name, path.name)
            self._move(path, self.archive)
            return
        skip = int(prior.get("rows", 0))
        captured = issues = 0
        pending: Chunk | None = None
        try:
            for chunk in read_csv(path, self.layout, self.ctx, source=self.name, chunk_rows=self.settings.chunk_rows):
                if pending is not None and pending.rows > skip:
                    captured, issues = self._submit(sink, key, path, pending, False, captured, issues)
                pending = chunk
        except MalformedFile as exc:
            note = f" Rows 1-{skip + captured} were captured before the problem." if captured else ""
            raise MalformedFile(f"{exc}{note}") from None
        if pending is not None:
            captured, issues = self._submit(sink, key, path, pending, True, captured, issues)
        self._move(path, self.archive)
        log.info("%s: %s captured: %d movements, %d lines need attention", self.name, path.name, captured, issues)

    def _submit(
        self, sink: BatchSink, key: str, path: Path, chunk: Chunk, done: bool, captured: int, issues: int
    ) -> tuple[int, int]:
        cursor = Cursor(key, {"rows": chunk.rows, "done": done, "name": path.name})
        sink.submit(Batch(movements=chunk.movements, issues=chunk.issues, cursor=cursor))
        self.health.state, self.health.last_error = "ok", None
        self.health.last_capture_at = time.time()
        self.health.captured += len(chunk.movements)
        return captured + len(chunk.movements), issues + len(chunk.issues)

    def _quarantine(self, path: Path, reason: str) -> None:
        self.health.files_quarantined += 1
        self.health.last_error = f"{path.name} quarantined: {reason}"
        log.warning("%s: %s quarantined: %s", self.name, path.name, reason)
        target = self._free_name(self.quarantine_dir, path.name)
        text = (
            f"File:      {path.name}\n"
            f"Source:    {self.name} ({self.inbox})\n"
            f"When:      {datetime.now(UTC).isoformat(timespec='seconds')}\n"
            f"Reason:    {reason}\n\n"
            "The file is kept unchanged beside this note. After fixing the cause, move the file back\n"
            "into the inbox; lines that were already captured will not be counted twice.\n"
        )
        try:
            target.with_name(target.name + ".reason.txt").write_text(text, encoding="utf-8")
            self._move(path, self.quarantine_dir, target)
        except OSError as exc:
            log.error("%s: could not quarantine %s (%s); it stays in the inbox", self.name, path.name, exc)
            self._retry_at[path.name] = time.monotonic() + 60.0

    def _move(self, path: Path, folder: Path, target: Path | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = target or self._free_name(folder, path.name)
        try:
            path.replace(target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copy2(path, target)
            with open(target, "rb+") as handle:
                os.fsync(handle.fileno())
            path.unlink()

    @staticmethod
    def _free_name(folder: Path, name: str) -> Path:
        target = folder / name
        if not target.exists():
            return target
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        stem, dot, suffix = name.partition(".")
        return folder / f"{stem}.{stamp}{dot}{suffix}"

    def _forget(self, name: str) -> None:
        self._seen.pop(name, None)
        self._retry_at.pop(name, None)
        with self._lock:
            self._written.pop(name, None)
            self._closed.pop(name, None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(settings: FileDropSettings, ctx: SourceContext) -> FileDropSource:
    """Build a file_drop source (the factory registered for ``kind = "file_drop"``)."""
    return FileDropSource(settings, ctx)


def replay(settings: FileDropSettings, ctx: SourceContext, path: Path) -> Iterator[Batch]:
    """Read one file the way the live source would, yielding its batches (no folders, no cursor)."""
    source = FileDropSource(settings, ctx)
    for chunk in read_csv(path, source.layout, ctx, source=settings.name, chunk_rows=settings.chunk_rows):
        yield Batch(movements=chunk.movements, issues=chunk.issues)


register("file_drop", FileDropSettings, build, replay)
