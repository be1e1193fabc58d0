"""``file_drop``: POS export files (CSV, JSON lines, ARTS POSLog XML) dropped into a watched folder.

Invariants:
- Folder events (watchdog) are hints that wake a scan; the periodic rescan is the truth, so files
  present at start-up, renamed in, or missed by the OS are all found.
- A file is read only once it is complete: unchanged in size and time for ``settle`` and, where
  the OS reports opens and closes (inotify), closed by every process that opened it, so a slow
  writer that pauses with the file open is waited for. A file its writer was seen to close, with
  no handle left open, needs only ``settle_after_close``. A file whose end is cut off (CSV or JSON
  lines without a final line end, POSLog without its closing root tag) is waited for until
  ``open_timeout``, so a writer that pauses longer than ``settle`` (polling, network shares) is
  not read half-way. A file whose size or time changed while it was read, or by the time a
  problem was found in it, is neither archived nor quarantined: it is read again once it settles
  (same lines, same event ids, nothing counted twice).
- A file is moved to ``archive`` only after every batch read from it is durable, and to
  ``quarantine`` (with ``<name>.reason.txt`` beside it) when it cannot be read; its bytes are never
  deleted or changed. Names that are too long for a suffix are shortened, and names Windows
  cannot hold (device names such as ``CON.csv``, reserved characters such as ``:`` or ``?``, a
  trailing dot) are made portable, never refused; the reason file says under which name a file
  was stored.
- A file's cursor is keyed by its SHA-256: a crash mid-file resumes after the last durable chunk,
  and the same file dropped again is recognised and changes nothing.
- File names are shown (logs, reasons, source references) in a printable form; names that are not
  valid UTF-8 are handled by their real bytes and never crash a scan.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
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
from pos_adapters.csv_format import FIELDS, REQUIRED, CsvLayout, read_csv
from pos_adapters.csv_presets import PRESETS
from pos_adapters.jsonl_format import read_jsonl
from pos_adapters.poslog import PoslogOptions, read_poslog
from pos_adapters.reading import Chunk, MalformedFile, display_name

log = logging.getLogger("possync.source.file_drop")
Duration = Annotated[float, BeforeValidator(parse_duration)]
FORMATS = ("csv", "jsonl", "poslog")
DEFAULT_PATTERNS = {"csv": "*.csv", "jsonl": "*.jsonl", "poslog": "*.xml"}
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~", ".reason.txt")
UNITS = {"csv": "rows", "jsonl": "lines", "poslog": "transactions"}
NAME_MAX = 255  # bytes in one file name on the file systems possync runs on
OPEN_TIMEOUT_S = 60.0  # default: a file held open or cut off but unchanged this long (or 10 x settle) is read anyway


CLOSED_THEN_MOVED_MAX = 256  # names remembered as "closed, then renamed before the close was handled"
STORE_RETRY_S = 10.0  # a file that could not be stored (disk full, database locked) is tried again this often


class FileChanged(RuntimeError):
    """The file changed while it was being read; it is read again once it settles."""


class FileDropSettings(SourceSettings):
    """``[[sources]]`` with ``kind = "file_drop"``."""

    kind: Literal["file_drop"] = "file_drop"
    path: str
    pattern: str | None = None
    format: str = "csv"
    archive: str | None = None
    quarantine: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    preset: str | None = None
    kinds: dict[str, str] = Field(default_factory=dict)
    default_kind: Kind | None = None
    encoding: str = "utf-8-sig"
    delimiter: str = Field(",", min_length=1, max_length=1)
    decimal_comma: bool = False
    poslog_item_id: Literal["ItemID", "POSItemID"] = "ItemID"
    max_line_kb: int = Field(1024, ge=1, le=65536)
    settle: Duration = 1.0
    settle_after_close: Duration = Field(0.15, ge=0)
    open_timeout: Duration | None = None
    rescan_every: Duration = 30.0
    max_file_mb: float = Field(200.0, gt=0)
    chunk_rows: int = Field(2000, ge=1, le=100_000)
    polling: bool = False

    @property
    def file_pattern(self) -> str:
        """The glob in force: ``pattern``, else the format's usual extension."""
        return self.pattern or DEFAULT_PATTERNS[self.format]

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

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"preset {value!r} is not known (available: {', '.join(sorted(PRESETS))})")
        return value

    @model_validator(mode="after")
    def _csv_needs_columns(self) -> FileDropSettings:
        if self.format == "csv" and self.preset is not None:
            if self.columns or self.kinds or self.default_kind is not None:
                raise ValueError(
                    f"preset {self.preset!r} reads its own columns; remove [sources.columns], [sources.kinds] "
                    "and default_kind, or remove the preset"
                )
        elif self.format == "csv":
            missing = [f for f in REQUIRED if f not in self.columns]
            if missing:
                raise ValueError(
                    f"[sources.columns] must map {', '.join(missing)} for a CSV source "
                    f"(or choose a preset: {', '.join(sorted(PRESETS))})"
                )
            if "kind" not in self.columns and self.default_kind is None:
                raise ValueError("map the 'kind' column in [sources.columns] or set default_kind")
        else:
            csv_only = [k for k in ("columns", "preset", "kinds", "default_kind") if getattr(self, k)]
            if csv_only:
                raise ValueError(f"{', '.join(csv_only)} apply to CSV files only, not to format {self.format!r}")
        return self


@dataclass
class _Seen:
    signature: tuple[int, int]
    since: float
    cut_off: bool | None = None  # whether the file's end looked cut off (checked once per signature)


class _Events(FileSystemEventHandler):
    """Turns folder events into wake-ups and a count of open handles per file name (where the OS reports opens)."""

    def __init__(self, source: FileDropSource) -> None:
        self.source = source

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        name = Path(os.fsdecode(event.src_path)).name
        if kind == "opened":
            self.source.opened(name, +1)
        elif kind == "closed":
            self.source.closed(name, _signature(os.fsdecode(event.src_path)))
        elif kind == "closed_no_write":
            self.source.opened(name, -1)
        elif kind == "moved":
            self.source.renamed(name, Path(os.fsdecode(event.dest_path)).name)
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
            preset=settings.preset,
            decimal_comma=settings.decimal_comma,
        )
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.open_timeout = (
            max(settings.open_timeout, settings.settle)
            if settings.open_timeout is not None
            else max(OPEN_TIMEOUT_S, 10 * settings.settle)
        )
        self._open: dict[str, int] = {}
        self._closed_as: dict[str, tuple[int, int]] = {}  # size and time of a file as its writer closed it
        # Names closed by a writer but gone by the time the close was handled: renamed into place
        # at once (write aside, then rename). Bounded: most recent first out of mind.
        self._closed_then_moved: dict[str, bool] = {}
        self._seen: dict[str, _Seen] = {}
        self._link_moves = False  # archive by link + unlink (see _link_then_unlink)
        self._retry_at: dict[str, float] = {}

    # -- events ------------------------------------------------------------------------------

    def opened(self, name: str, delta: int, *, closed_as: tuple[int, int] | None = None) -> None:
        """Count an open (+1) or a close (-1) of ``name``; ``closed_as``: its signature as a writer closed it."""
        with self._lock:
            count = max(self._open.get(name, 0) + delta, 0)
            if count:
                self._open[name] = count
            else:
                self._open.pop(name, None)
            if closed_as is not None:
                self._closed_as[name] = closed_as

    def closed(self, name: str, signature: tuple[int, int] | None) -> None:
        """Count a writer's close of ``name``; ``signature``: its size and time then (None: already renamed)."""
        self.opened(name, -1, closed_as=signature)
        if signature is None:
            with self._lock:
                self._closed_then_moved[name] = True
                while len(self._closed_then_moved) > CLOSED_THEN_MOVED_MAX:
                    del self._closed_then_moved[next(iter(self._closed_then_moved))]

    def renamed(self, old: str, new: str) -> None:
        """Carry open handles over a rename inside the folder (an open file keeps its handles).

        A file renamed right after its writer closed it (the close was handled after the rename) is
        known as closed too, as it is at the rename: a later write changes its size or time, and a
        later open is counted, so neither can be mistaken for the closed file.
        """
        with self._lock:
            count = self._open.pop(old, 0)
            if count:
                self._open[new] = count
            closed = self._closed_as.pop(old, None)
            if self._closed_then_moved.pop(old, False) and closed is None and not count:
                closed = _signature(str(self.inbox / new))
            if closed is not None:
                self._closed_as[new] = closed

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
            self._link_moves = sys.platform.startswith("linux") and not self.settings.polling
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
            wait = self._settle_wait(path, seen, now)
            if wait > 0:
                next_check = min(next_check, wait)
                continue
            self._capture(path, sink)
        with self._lock:  # forget open counts of names that left the folder (events can be lost)
            for name in [n for n in self._open if not (self.inbox / n).exists()]:
                del self._open[name]
            for name in [n for n in self._closed_as if not (self.inbox / n).exists()]:
                del self._closed_as[name]
        return max(next_check, 0.05)

    def _candidates(self) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(self.inbox), key=lambda e: e.name)
        except FileNotFoundError:
            return
        pattern = self.settings.file_pattern
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES):
                continue
            if not fnmatch.fnmatch(name.lower(), pattern.lower()):
                continue
            if entry.is_file(follow_symlinks=False):
                yield Path(entry.path)

    def _settle_wait(self, path: Path, seen: _Seen, now: float) -> float:
        """Seconds until the file counts as complete (0 or less: now).

        Always: unchanged in size and time for ``settle``. Where the OS reports opens and closes
        (Linux), also: nobody has it open, so a writer that pauses longer than ``settle`` with the
        file open is waited for; a file held open but unchanged for ``open_timeout`` is read anyway.
        A file closed by its writer after its last change needs only ``settle_after_close``. A file
        whose end looks cut off is waited for until ``open_timeout`` too.
        """
        name = path.name
        with self._lock:
            held_open = self._open.get(name, 0) > 0
            closed_as = self._closed_as.get(name)
        stable_for = now - seen.since
        if held_open:
            return self.open_timeout - stable_for
        settings = self.settings
        closed = closed_as == seen.signature  # unchanged since its writer closed it
        settle = min(settings.settle_after_close, settings.settle) if closed else settings.settle
        wait = settle - stable_for
        if wait > 0:
            return wait
        if seen.cut_off is None:
            seen.cut_off = _cut_off(path, self.settings.format, self.settings.encoding)
            if seen.cut_off:
                log.info(
                    "%s: %s ends mid-line or mid-document; waiting up to %.0f s for its writer to finish",
                    self.name,
                    display_name(name),
                    self.open_timeout,
                )
        if seen.cut_off:
            return self.open_timeout - stable_for
        return wait

    # -- one file ----------------------------------------------------------------------------

    def read(self, path: Path, name: str | None = None) -> Iterator[Chunk]:
        """Read one file in this source's format, yielding its chunks (``name``: how to call it)."""
        settings = self.settings
        name = name or display_name(path.name)
        if settings.format == "poslog":
            options = PoslogOptions(item_id=settings.poslog_item_id)
            return read_poslog(
                path, self.ctx, source=self.name, chunk_rows=settings.chunk_rows, name=name, options=options
            )
        if settings.format == "jsonl":
            return read_jsonl(
                path,
                self.ctx,
                source=self.name,
                chunk_rows=settings.chunk_rows,
                name=name,
                max_line_bytes=settings.max_line_kb * 1024,
            )
        return read_csv(path, self.layout, self.ctx, source=self.name, chunk_rows=settings.chunk_rows, name=name)

    def _capture(self, path: Path, sink: BatchSink) -> None:
        name = path.name
        shown = display_name(name)
        try:
            self._capture_file(path, sink)
        except MalformedFile as exc:
            self._quarantine(path, str(exc))
        except FileChanged as exc:
            log.warning("%s: %s", self.name, exc)
            self._seen.pop(name, None)
            return
        except CaptureRefused as exc:
            message = f"{shown}: could not store: {exc}"
            if self.health.last_error != message:
                log.error(
                    "%s: %s could not be stored; it stays in the folder and is retried every %.0f s: %s",
                    self.name,
                    shown,
                    STORE_RETRY_S,
                    exc,
                )
            self.health.state, self.health.last_error = "error", message
            self._retry_at[name] = time.monotonic() + STORE_RETRY_S
            return
        except FileNotFoundError:
            log.info("%s: %s disappeared before it was read", self.name, shown)
        except OSError as exc:
            self.health.state, self.health.last_error = "error", f"{shown}: {exc.strerror or exc}"
            log.error("%s: %s could not be read, will retry in 30 s: %s", self.name, shown, exc)
            self._retry_at[name] = time.monotonic() + 30.0
            return
        except Exception as exc:  # a defect must cost one file, never the source's thread
            log.exception("%s: unexpected error reading %s", self.name, shown)
            self._quarantine(
                path,
                f"possync could not read this file because of an unexpected error ({type(exc).__name__}: "
                f"{str(exc)[:300]}). Lines read before it were stored. Please report this with the file.",
            )
        self._forget(name)

    def _capture_file(self, path: Path, sink: BatchSink) -> None:
        shown = display_name(path.name)
        before = path.stat()
        size = before.st_size
        limit = int(self.settings.max_file_mb * 1024 * 1024)
        if size > limit:
            raise MalformedFile(
                f"the file is {size / 1048576:.1f} MB, over this source's limit of "
                f"max_file_mb = {self.settings.max_file_mb:g}; split the export or raise the limit"
            )
        key = f"file:{_sha256(path)}"
        prior = sink.cursor(key) or {}
        if prior.get("done"):
            log.info("%s: %s was captured before (same content); archiving it again", self.name, shown)
            self._move(path, self.archive)
            return
        skip = int(prior.get("rows", 0))
        captured = issues = 0
        stored = skip
        pending: Chunk | None = None
        try:
            for chunk in self.read(path, shown):
                if pending is not None and pending.rows > skip:
                    captured, issues = self._submit(sink, key, shown, pending, False, captured, issues)
                    stored = pending.rows
                pending = chunk
        except MalformedFile as exc:
            if pending is not None and pending.rows > skip:  # what was read before the problem is sound
                captured, issues = self._submit(sink, key, shown, pending, False, captured, issues)
                stored = pending.rows
            if _changed(path, before):  # the "problem" is a writer still at work: not the file's fault
                raise FileChanged(
                    f"{shown} changed while it was being read ({exc}); it stays in the inbox and is read "
                    "again once it settles"
                ) from None
            unit = UNITS[self.settings.format]
            note = f" The first {stored} {unit} were captured before the problem." if stored else ""
            raise MalformedFile(f"{exc}{note}") from None
        if _changed(path, before):
            raise FileChanged(
                f"{shown} changed while it was being read (still being written?); it stays in the inbox and is "
                "read again once it settles"
            )
        if pending is not None:
            captured, issues = self._submit(sink, key, shown, pending, True, captured, issues)
        self._move(path, self.archive)
        log.info("%s: %s captured: %d movements, %d lines need attention", self.name, shown, captured, issues)

    def _submit(
        self, sink: BatchSink, key: str, name: str, chunk: Chunk, done: bool, captured: int, issues: int
    ) -> tuple[int, int]:
        cursor = Cursor(key, {"rows": chunk.rows, "done": done, "name": name})
        sink.submit(Batch(movements=chunk.movements, issues=chunk.issues, cursor=cursor, voids=chunk.voids))
        self.health.state, self.health.last_error = "ok", None
        self.health.last_capture_at = time.time()
        self.health.captured += len(chunk.movements)
        return captured + len(chunk.movements), issues + len(chunk.issues)

    def _quarantine(self, path: Path, reason: str) -> None:
        shown = display_name(path.name)
        self.health.files_quarantined += 1
        self.health.last_error = f"{shown} quarantined: {reason}"
        log.warning("%s: %s quarantined: %s", self.name, shown, reason)
        target = self._free_name(self.quarantine_dir, path.name, reserve=len(".reason.txt"))
        renamed = "" if target.name == path.name else f"Stored as: {display_name(target.name)}\n"
        text = (
            f"File:      {shown}\n"
            f"{renamed}"
            f"Source:    {self.name} ({self.inbox})\n"
            f"When:      {datetime.now(UTC).isoformat(timespec='seconds')}\n"
            f"Reason:    {reason}\n\n"
            "The file is kept unchanged beside this note. After fixing the cause, move the file back\n"
            "into the inbox; lines that were already captured will not be counted twice.\n"
        )
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            target.with_name(target.name + ".reason.txt").write_text(text, encoding="utf-8", errors="replace")
            self._move(path, self.quarantine_dir, target)
        except OSError as exc:
            log.error("%s: could not quarantine %s (%s); it stays in the inbox", self.name, shown, exc)
            self._retry_at[path.name] = time.monotonic() + 60.0

    def _move(self, path: Path, folder: Path, target: Path | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if target is None:
            if _same_file(path, folder / _fit(portable_name(path.name), NAME_MAX)):
                path.unlink()  # linked there before a crash stopped the unlink: the move is finished
                return
            target = self._free_name(folder, path.name)
        if self._link_moves and _link_then_unlink(path, target):
            return
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
    def _free_name(folder: Path, name: str, reserve: int = 0) -> Path:
        """Return a path in ``folder`` for ``name`` that is free, short enough and valid on Windows too.

        ``reserve`` bytes are kept spare (for a ``.reason.txt`` suffix). The archive and quarantine
        may be a Windows share: device names (``CON``, ``NUL``, ``COM1``...), characters Windows
        refuses and trailing dots or spaces are replaced, and no name can leave ``folder``.
        """
        limit = NAME_MAX - reserve
        fitted = _fit(portable_name(name), limit)
        target = folder / fitted
        if not target.exists():
            return target
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        stem, dot, suffix = _fit(name, limit - len(stamp) - 1).partition(".")
        return folder / f"{stem}.{stamp}{dot}{suffix}"

    def _forget(self, name: str) -> None:
        self._seen.pop(name, None)
        self._retry_at.pop(name, None)


WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]]
)
WINDOWS_FORBIDDEN = str.maketrans({ch: "_" for ch in '<>:"/\\|?*'} | {chr(c): "_" for c in range(32)})


def portable_name(name: str) -> str:
    """Return ``name`` as a file name every supported OS accepts (unchanged when it already is)."""
    safe = name.translate(WINDOWS_FORBIDDEN)
    if safe.rstrip(". ") != safe:
        safe = safe.rstrip(". ") + "_"
    if safe in ("", ".", ".."):
        safe = "_" + safe
    if safe.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_DEVICES:
        safe = "_" + safe
    return safe


def _fit(name: str, limit: int) -> str:
    """Shorten a file name to ``limit`` bytes, keeping its extension (``<start>~<ext>``)."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    ext = os.fsencode(PurePath(name).suffix)[:16]
    return os.fsdecode(raw[: max(limit - len(ext) - 1, 1)] + b"~" + ext)


def _link_then_unlink(path: Path, target: Path) -> bool:
    """Move ``path`` to ``target`` as a new link and an unlink; False if this file system cannot link.

    Used where inotify watches the folder: a rename out of it is an unpaired "moved from", which
    watchdog holds for half a second waiting for its pair, and every later event of the folder (the
    next POS file) waits behind it. An unlink is reported at once. A crash between the two steps
    leaves the file under both names; the next scan finds it captured before and archives it again,
    which then only removes the inbox name (see ``_same_file``).
    """
    try:
        os.link(path, target, follow_symlinks=False)
    except OSError:
        return False  # another volume, a share or file system without hard links: rename instead
    path.unlink()
    return True


def _same_file(path: Path, other: Path) -> bool:
    """Whether both names are links to one file."""
    try:
        return path.samefile(other)
    except OSError:
        return False


def _signature(path: str) -> tuple[int, int] | None:
    """Return a file's size and modification time (None when it is gone)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)


def _changed(path: Path, before: os.stat_result) -> bool:
    """Whether the file's size or modification time differs from ``before`` (a vanished file has changed)."""
    try:
        after = path.stat()
    except FileNotFoundError:
        return True
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


TAIL_BYTES = 4096


def _cut_off(path: Path, fmt: str, encoding: str) -> bool:
    """Whether the file's end looks cut off: no final line end, or a POSLog without its root's end tag.

    Only what can be told from bytes: binary files and files in UTF-16/32 (rare exports) are not judged.
    """
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(TAIL_BYTES)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - TAIL_BYTES, 0))
            tail = handle.read(TAIL_BYTES)
    except OSError:
        return False  # reading will report it
    if not tail or not _looks_like_text(head, "utf-8" if fmt != "csv" else encoding):
        return False  # empty or binary: nothing to wait for, the reader will say what is wrong
    if fmt != "poslog":
        return not tail.endswith((b"\n", b"\r"))
    root = _XML_ROOT.search(head)
    if root is None:
        return False  # not recognisably XML: the parser will say why
    if _EMPTY_ROOT.match(head, root.end()):
        return False  # <POSLog/>: the whole document is its start tag
    end_tag = rb"</\s*" + re.escape(root.group(1)) + rb"\s*>"
    return re.search(end_tag + _XML_MISC + rb"\Z", tail, re.S) is None


def _looks_like_text(head: bytes, encoding: str) -> bool:
    """Whether the file's first bytes are text in ``encoding`` (no NUL bytes, decodable)."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


# The first element's name, after the prolog, comments and processing instructions.
_XML_MISC = rb"(?:\s+|<!--.*?-->|<\?.*?\?>)*"  # what may follow the root element: space, comments, PIs
_EMPTY_ROOT = re.compile(rb"(?:\s+[^<>]*)?/>", re.S)  # the rest of a self-closing root start tag
_XML_ROOT = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)*<([A-Za-z_][\w.:-]*)", re.S)


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
    for chunk in source.read(path):
        yield Batch(movements=chunk.movements, issues=chunk.issues, voids=chunk.voids)


register("file_drop", FileDropSettings, build, replay)
