"""``serial_tap``: sales captured from the ESC/POS byte stream between a POS and its receipt printer.

Threads and invariants:
- The port thread reads the POS port. With ``passthrough`` it first writes every byte, unchanged, to
  the printer port, and a second thread carries the printer's replies (status, flow control) back to
  the POS. These threads never parse, never wait for the outbox and never look at a receipt, so
  printing can neither be altered nor held up by capture: forwarding does not depend on parsing.
- The port thread then appends the bytes to the spool (``serial_spool``). The capture loop (the
  source's own thread) decodes the spool, splits it into receipts, writes each receipt's raw bytes to
  the archive (gzip, fsynced) and only then submits its movements, issues and cursor in one batch.
- The cursor is the capture sequence number plus the spool position after the last captured receipt.
  The promise: every receipt whose bytes the agent read and whose end (cut or idle gap) it saw is
  captured exactly once, across kills and restarts. Bytes sent while the agent is not reading are
  lost on the wire. A receipt whose beginning was not seen (at start-up, after the port was reopened,
  after a hole in the spool) is archived as a fragment with a log line, never half-parsed.
- Event ids come from the receipt's content (transaction id, line number, kind): a receipt captured
  again (a reprint, a recovered spool, a reprocessed archive file) changes nothing.
- One bad receipt becomes one ``RECEIPT_UNPARSED`` exception carrying its text; it never stops capture.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import serial
from pydantic import BeforeValidator, Field, field_validator, model_validator

from agent.domain import CaptureIssue, Cursor, Movement, make_issue_id, parse_duration
from pos_adapters.base import Batch, BatchSink, CaptureRefused, SourceContext, SourceHealth, SourceSettings, register
from pos_adapters.escpos import Receipt, ReceiptSplitter, split_recording
from pos_adapters.lines import PosLine, normalize_line
from pos_adapters.receipt_templates import (
    ParsedReceipt,
    ReceiptTemplate,
    SkippedReceipt,
    TemplateError,
    TemplateSpec,
    Unparsed,
    builtin_names,
    compile_spec,
    load_builtin,
    load_file,
)
from pos_adapters.serial_spool import (
    CLOSE,
    DATA,
    GAP,
    IDLE,
    OPEN,
    Frame,
    Position,
    SpoolReader,
    SpoolWriter,
    segment_numbers,
)

log = logging.getLogger("possync.source.serial_tap")
Duration = Annotated[float, BeforeValidator(parse_duration)]

CURSOR_KEY = "capture"
UNPARSED = "RECEIPT_UNPARSED"
READ_TIMEOUT_S = 0.1
RETRY_S = 5.0
HOUSEKEEPING_S = 3600.0
TEMPLATE_CHECK_S = 2.0
STARTUP_QUIET_S = 1.0  # with idle_gap off, how long the line must be quiet before the first receipt
PARITIES = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD}
PARITIES |= {"mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SerialTapSettings(SourceSettings):
    """``[[sources]]`` with ``kind = "serial_tap"``."""

    kind: Literal["serial_tap"] = "serial_tap"
    port: str = Field(min_length=1)
    baudrate: int = Field(9600, gt=0, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = 1
    xonxoff: bool = False
    rtscts: bool = False
    dsrdtr: bool = False
    passthrough: str | None = None
    template: str | TemplateSpec | None = None
    template_file: str | None = None
    encoding: str = "cp437"
    idle_gap: Duration = 2.0
    terminal: str | None = Field(None, min_length=1, max_length=100)
    receipt_retention_days: int = Field(90, ge=1)
    reconnect_every: Duration = Field(2.0, gt=0)

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in builtin_names():
                raise ValueError(
                    f"there is no built-in template {value!r} (built-in: {', '.join(builtin_names())}); "
                    "for a template of your own use template_file"
                )
            return value
        if isinstance(value, dict):
            try:
                return compile_spec(value, "the inline template").spec
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"{value!r} is not a text encoding Python knows (try 'cp437' or 'cp1252')") from None
        return value

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError("stopbits is 1, 1.5 or 2")
        return value

    @field_validator("idle_gap")
    @classmethod
    def _gap(cls, value: float) -> float:
        if 0 < value < 0.05:
            raise ValueError("an idle gap shorter than 50 ms would split receipts; use 0 to turn it off")
        return value

    @model_validator(mode="after")
    def _one_template(self) -> SerialTapSettings:
        if (self.template is None) == (self.template_file is None):
            raise ValueError(
                "set exactly one of template (a built-in name such as 'generic-58mm', or an inline "
                "[sources.template] table) and template_file"
            )
        if self.passthrough is not None and self.passthrough == self.port:
            raise ValueError("passthrough must be the printer's port, not the port the POS writes to")
        return self


def resolve_template(settings: SerialTapSettings, base_dir: Path) -> ReceiptTemplate:
    """Load the source's template (raises ``TemplateError`` for an unreadable or invalid template file)."""
    if isinstance(settings.template, TemplateSpec):
        return compile_spec(settings.template, f"the inline template of source {settings.name}")
    if isinstance(settings.template, str):
        return load_builtin(settings.template)
    assert settings.template_file is not None
    return load_file(base_dir / settings.template_file)


# -- one receipt ---------------------------------------------------------------------------------


@dataclass
class ReceiptOutcome:
    """What a receipt was read as: a transaction, a skipped print, or a reason it could not be read."""

    ref: str
    receipt: Receipt
    parsed: ParsedReceipt | None = None
    skipped: SkippedReceipt | None = None
    reason: str | None = None
    movements: list[Movement] = field(default_factory=list)
    issues: list[CaptureIssue] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``parsed``, ``skipped``, ``unparsed`` or ``partial``."""
        if not self.receipt.complete:
            return "partial"
        if self.reason is not None:
            return "unparsed"
        return "skipped" if self.skipped is not None else "parsed"


def read_receipt(
    receipt: Receipt,
    ref: str,
    template: ReceiptTemplate,
    settings: SerialTapSettings,
    ctx: SourceContext,
    *,
    kept_as: str = "",
) -> ReceiptOutcome:
    """Read one complete receipt with the template into movements and issues (never raises)."""
    outcome = ReceiptOutcome(ref, receipt)
    lines = [line.text for line in receipt.lines]
    try:
        result = template.parse(lines, terminal=settings.terminal)
    except Unparsed as exc:
        outcome.reason = str(exc)
    except Exception as exc:  # a defect must cost one receipt (kept, excepted), never the source
        log.exception("%s: %s could not be read because of an internal error", settings.name, ref)
        outcome.reason = f"internal error while reading it ({type(exc).__name__}: {exc})"
    else:
        if isinstance(result, SkippedReceipt):
            outcome.skipped = result
            return outcome
        outcome.parsed = result
        _movements(outcome, result, settings, ctx, kept_as)
        return outcome
    notes = f" (the decoder noted: {'; '.join(receipt.notes[:3])})" if receipt.notes else ""
    kept = f"; its raw bytes are in {kept_as} in the data folder" if kept_as else ""
    again = (
        f"copy that file into receipts/{settings.name}/reprocess/ in the data folder"
        if kept_as
        else "feed the receipt again"
    )
    outcome.issues.append(
        CaptureIssue(
            issue_id=make_issue_id(settings.name, ref),
            source=settings.name,
            source_ref=ref,
            code=UNPARSED,
            message=(
                f"the receipt could not be read with template {template.name}: {outcome.reason}{notes}. "
                f"Nothing of it was captured; its text is kept here{kept}. Fix the template (try it with "
                f"'possync receipts replay'), then {again} or enter the sale by hand, and resolve this exception."
            ),
            pos_transaction_id=template.transaction_of(lines),
            raw=receipt.text,
        )
    )
    return outcome


def _movements(
    outcome: ReceiptOutcome, parsed: ParsedReceipt, settings: SerialTapSettings, ctx: SourceContext, kept_as: str
) -> None:
    kind = "return" if parsed.is_return else "sale"
    archive = f" ({kept_as})" if kept_as else ""  # the receipt's raw bytes, relative to the data folder
    for item in parsed.items:
        quantity = item.quantity
        if parsed.is_return:
            quantity = abs(quantity)
        elif quantity > 0 and item.amount is not None and item.amount < 0:
            quantity = -quantity  # a negative amount on a sale receipt is a line taken back
        line = PosLine(
            pos_transaction_id=parsed.transaction,
            line_no=item.line_no,
            occurred_at=parsed.occurred_at,
            kind=kind,
            item=item.item,
            quantity=quantity,
            unit=item.unit,
            terminal_id=parsed.terminal,
            unit_price=_unit_price(item.price, item.amount, item.quantity),
            voided=item.voided,
        )
        ref = f"{outcome.ref} line {item.line_no}{archive}"
        result = normalize_line(line, ctx, source=settings.name, source_ref=ref, raw=item.text.strip())
        if isinstance(result, Movement):
            outcome.movements.append(result)
        elif isinstance(result, CaptureIssue):
            outcome.issues.append(result)


def _unit_price(price: Decimal | None, amount: Decimal | None, quantity: Decimal) -> Decimal | None:
    """Return the printed unit price, else the line amount divided by the quantity (receipts omit "1 @")."""
    if price is not None:
        return abs(price)
    if amount is not None and quantity:
        return abs(amount / quantity).quantize(Decimal("0.0001")).normalize()
    return None


# -- the archive -----------------------------------------------------------------------------------


def write_archive(path: Path, raw: bytes) -> None:
    """Write ``raw`` gzip-compressed to ``path`` durably (temporary file, fsync, rename, fsync folder)."""
    folder = path.parent
    fresh = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{path.name}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(gzip.compress(raw, compresslevel=6, mtime=0))
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
    _fsync_folder(folder)
    if fresh:
        _fsync_folder(folder.parent)


def _unused_for(path: Path, raw: bytes) -> Path:
    """Return ``path``, or a free name beside it when it already holds another receipt.

    Capture numbers start again at 1 when the outbox is new (a reinstall, a restored backup) while
    the day's archive is still there: an audit file must never be overwritten by another receipt.
    The same receipt (written before a crash, before its batch was stored) keeps its name.
    """
    candidate, n = path, 1
    while candidate.exists():
        try:
            if read_capture(candidate) == raw:
                return candidate
        except (OSError, EOFError, gzip.BadGzipFile):
            pass  # unreadable: keep it as it is, for a human
        n += 1
        candidate = path.with_name(path.name.replace(".escpos.gz", f"-{n}.escpos.gz"))
    return candidate


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a folder for fsync; NTFS journals the rename
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_capture(path: Path) -> bytes:
    """Read a recorded capture: raw ESC/POS bytes, or an archive file (gzip)."""
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


# -- the serial side -------------------------------------------------------------------------------


def open_port(url: str, settings: SerialTapSettings, *, timeout: float | None) -> serial.SerialBase:
    """Open a device path, COM port or pyserial URL with the source's line settings."""
    port = serial.serial_for_url(url, do_not_open=True)
    port.baudrate = settings.baudrate
    port.bytesize = settings.bytesize
    port.parity = PARITIES[settings.parity]
    port.stopbits = settings.stopbits
    port.xonxoff = settings.xonxoff
    port.rtscts = settings.rtscts
    port.dsrdtr = settings.dsrdtr
    port.timeout = timeout
    port.write_timeout = None
    if os.name == "posix" and "://" not in url:
        port.exclusive = True  # a second reader would steal bytes from this one
    port.open()
    return port


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.removeprefix("[Errno 2] ").removeprefix("[Errno 5] ")


class PortLink:
    """The wire side: reads the POS port, forwards to the printer, spools; reopens ports that drop."""

    def __init__(self, settings: SerialTapSettings, spool: SpoolWriter, on_data: Callable[[], None]) -> None:
        """Nothing is opened until ``run``."""
        self.settings = settings
        self.spool = spool
        self.on_data = on_data
        self.quiet_s = settings.idle_gap if settings.idle_gap > 0 else STARTUP_QUIET_S
        self.pos: serial.SerialBase | None = None
        self.printer: serial.SerialBase | None = None
        self.pos_error: str | None = None
        self.printer_error: str | None = None
        self.spool_error: str | None = None
        self.bytes_not_printed = 0
        self._printer_lock = threading.Lock()
        self._printer_due = 0.0
        self._hole = False
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Read, forward and spool until ``stop`` is set (the port thread)."""
        self._stop = stop
        back: threading.Thread | None = None
        if self.settings.passthrough:
            back = threading.Thread(target=self._printer_to_pos, name=f"{self.settings.name}-printer", daemon=True)
            back.start()
        try:
            while not stop.is_set():
                port = self._open_pos(stop)
                if port is None:
                    break
                self._session(port, stop)
        finally:
            if back is not None:
                back.join(timeout=2)
            self._close_printer()
            try:
                self.spool.shutdown()
            except OSError as exc:
                log.warning("%s: closing the spool: %s", self.settings.name, exc)

    def cancel(self) -> None:
        """Wake a blocked read so that ``run`` notices ``stop`` at once."""
        for port in (self.pos, self.printer):
            cancel = getattr(port, "cancel_read", None)
            if callable(cancel):
                try:
                    cancel()
                except Exception as exc:
                    log.debug("cancel_read: %s", exc)

    def _open_pos(self, stop: threading.Event) -> serial.SerialBase | None:
        name = self.settings.name
        down_since: float | None = None
        while not stop.is_set():
            try:
                port = open_port(self.settings.port, self.settings, timeout=READ_TIMEOUT_S)
            except Exception as exc:  # SerialException, OSError, ValueError for a bad URL, or a driver's own
                if down_since is None:
                    down_since = time.monotonic()
                    log.error(
                        "%s: cannot open the POS port %s: %s; retrying every %g s",
                        name,
                        self.settings.port,
                        _why(exc),
                        self.settings.reconnect_every,
                    )
                self.pos_error = f"the POS port {self.settings.port} is not available: {_why(exc)}"
                stop.wait(self.settings.reconnect_every)
                continue
            if down_since is not None:
                down_for = time.monotonic() - down_since
                log.info("%s: POS port %s open again after %.0f s", name, self.settings.port, down_for)
            else:
                log.info("%s: POS port %s open", name, self.settings.port)
            self.pos, self.pos_error = port, None
            return port
        return None

    def _session(self, port: serial.SerialBase, stop: threading.Event) -> None:
        self._spool(self.spool.session, f"opened {self.settings.port}")
        self.on_data()
        last = time.monotonic()
        quiet_marked = False
        reason = "the agent stopped"
        try:
            while not stop.is_set():
                data = port.read(max(1, port.in_waiting))
                if data:
                    self._forward(data)
                    self._spool(self.spool.data, data)
                    self.on_data()
                    last = time.monotonic()
                    quiet_marked = False
                elif not quiet_marked and time.monotonic() - last >= self.quiet_s:
                    self._spool(self.spool.idle)
                    self.on_data()
                    quiet_marked = True
        except (serial.SerialException, OSError) as exc:
            reason = _why(exc)
            self.pos_error = f"the POS port {self.settings.port} failed: {reason}"
            log.error("%s: the POS port %s failed (%s); reopening it", self.settings.name, self.settings.port, reason)
        except Exception as exc:  # whatever a driver raises, reading (and printing) must go on
            reason = f"unexpected error: {exc!r}"
            self.pos_error = f"the POS port {self.settings.port} failed: {reason}"
            log.exception("%s: the POS port failed unexpectedly; reopening it", self.settings.name)
        finally:
            self.pos = None
            try:
                port.close()
            except Exception as exc:
                log.debug("closing the POS port: %s", exc)
            self._spool(self.spool.close, reason)
            self.on_data()
        if not stop.is_set():
            stop.wait(self.settings.reconnect_every)

    def _spool(self, write: Callable[..., None], *args: Any) -> None:
        try:
            if self._hole:
                self.spool.gap("bytes were read but could not be spooled")
                self._hole = False
            write(*args)
            if self.spool_error is not None:
                log.info("%s: the capture spool is writable again", self.settings.name)
                self.spool_error = None
        except OSError as exc:
            self._hole = True
            if self.spool_error is None:
                log.error(
                    "%s: cannot write the capture spool (%s): receipts are NOT captured until it is writable "
                    "(printing is not affected)",
                    self.settings.name,
                    exc,
                )
            self.spool_error = f"cannot write the capture spool: {exc.strerror or exc}; receipts are not captured"

    # -- printer side ----------------------------------------------------------------------------

    def _forward(self, data: bytes) -> None:
        if not self.settings.passthrough:
            return
        printer = self.printer or self._open_printer_if_due()
        if printer is None:
            self.bytes_not_printed += len(data)
            return
        try:
            printer.write(data)
        except (serial.SerialException, OSError) as exc:
            self.bytes_not_printed += len(data)
            self._printer_failed(printer, exc)

    def _open_printer_if_due(self) -> serial.SerialBase | None:
        assert self.settings.passthrough is not None
        with self._printer_lock:
            if self.printer is not None:
                return self.printer
            if time.monotonic() < self._printer_due:
                return None
            try:
                printer = open_port(self.settings.passthrough, self.settings, timeout=READ_TIMEOUT_S)
            except Exception as exc:  # SerialException, OSError, ValueError for a bad URL, or a driver's own
                self._printer_due = time.monotonic() + self.settings.reconnect_every
                if self.printer_error is None:
                    log.error(
                        "%s: cannot open the printer port %s (%s): receipts are captured but NOT printed",
                        self.settings.name,
                        self.settings.passthrough,
                        _why(exc),
                    )
                self.printer_error = (
                    f"the printer port {self.settings.passthrough} is not available: {_why(exc)}; "
                    "receipts are captured but not printed"
                )
                return None
            if self.printer_error is not None:
                log.info(
                    "%s: printer port %s open again (%d bytes from the POS could not be printed meanwhile)",
                    self.settings.name,
                    self.settings.passthrough,
                    self.bytes_not_printed,
                )
                self.bytes_not_printed = 0
            self.printer, self.printer_error = printer, None
            return printer

    def _printer_failed(self, printer: serial.SerialBase, exc: BaseException) -> None:
        with self._printer_lock:
            current = self.printer
            if current is None or current is not printer:
                return
            self.printer = None
            self._printer_due = time.monotonic() + self.settings.reconnect_every
            self.printer_error = (
                f"the printer port {self.settings.passthrough} failed: {_why(exc)}; "
                "receipts are captured but not printed"
            )
            log.error("%s: the printer port failed (%s); reopening it", self.settings.name, _why(exc))
            try:
                current.close()
            except Exception as close_exc:
                log.debug("closing the printer port: %s", close_exc)

    def _close_printer(self) -> None:
        with self._printer_lock:
            printer, self.printer = self.printer, None
        if printer is not None:
            try:
                printer.close()
            except Exception as exc:
                log.debug("closing the printer port: %s", exc)

    def _printer_to_pos(self) -> None:
        """Carry the printer's replies (status, flow control) back to the POS, unchanged."""
        stop = self._stop
        while not stop.is_set():
            printer = self.printer or self._open_printer_if_due()
            if printer is None:
                stop.wait(READ_TIMEOUT_S)
                continue
            try:
                data = printer.read(max(1, printer.in_waiting))
            except Exception as exc:  # the port may be closed under us by the other thread
                if printer.is_open and self.printer is printer:
                    self._printer_failed(printer, exc)
                continue
            pos = self.pos
            if data and pos is not None:
                try:
                    pos.write(data)
                except Exception as exc:  # the port thread sees a failing POS port and reopens it
                    log.debug("%s: printer reply not delivered to the POS: %s", self.settings.name, exc)


# -- the source ------------------------------------------------------------------------------------


@dataclass
class _Resume:
    seq: int = 0
    position: Position | None = None
    state: dict[str, Any] = field(default_factory=dict)


class SerialTapSource:
    """Taps a serial port carrying ESC/POS, optionally passing it through to the printer."""

    def __init__(self, settings: SerialTapSettings, ctx: SourceContext) -> None:
        """Resolve folders; nothing is opened until ``run``."""
        self.name = settings.name
        self.settings = settings
        self.ctx = ctx
        self.health = SourceHealth()
        self.root = ctx.data_dir / "receipts" / settings.name
        self.spool_dir = self.root / "spool"
        self.reprocess_dir = self.root / "reprocess"
        self.link: PortLink | None = None
        self.template: ReceiptTemplate | None = None
        self.template_error: str | None = None
        self.storage_error: str | None = None
        self.synced = False
        self.captured_receipts = 0
        self._wake = threading.Event()
        self._reader: SpoolReader | None = None
        self._template_loaded: tuple[int, int] | None = None
        self._session_seen: int | None = None
        self._template_checked = 0.0

    def wake(self) -> None:
        """Ask the capture loop to look at the spool now."""
        self._wake.set()

    # -- loop --------------------------------------------------------------------------------

    def run(self, sink: BatchSink, stop: threading.Event) -> None:
        """Tap the port and capture until ``stop`` is set."""
        resume = self._resume(sink, stop)
        if resume is None:
            return
        first = max([*segment_numbers(self.spool_dir), resume.position.segment if resume.position else 0]) + 1
        self.link = PortLink(self.settings, SpoolWriter(self.spool_dir, first), self.wake)
        port_thread = threading.Thread(target=self.link.run, args=(stop,), name=f"source-{self.name}-port", daemon=True)
        port_thread.start()
        try:
            while not stop.is_set():
                try:
                    self._capture_loop(sink, stop, resume)
                    return
                except Exception as exc:  # a defect: restart from the stored cursor, never skip a receipt
                    log.exception("%s: capture failed; restarting it from the last stored receipt", self.name)
                    self._set_error("storage", f"internal error in capture ({type(exc).__name__}: {exc}); retrying")
                    stop.wait(RETRY_S)
                    resume = self._resume(sink, stop)
                    if resume is None:
                        return
        finally:
            self.link.cancel()
            port_thread.join(timeout=5)

    def _resume(self, sink: BatchSink, stop: threading.Event) -> _Resume | None:
        """Read the stored cursor (retrying while the outbox cannot answer)."""
        while not stop.is_set():
            try:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
                stored = sink.cursor(CURSOR_KEY)
            except Exception as exc:
                self._set_error("storage", f"cannot read the capture cursor: {exc}")
                stop.wait(RETRY_S)
                continue
            if not stored:
                return _Resume()
            position = Position(int(stored["segment"]), int(stored["offset"]), int(stored.get("skip", 0)))
            return _Resume(int(stored["seq"]), position, dict(stored.get("state") or {}))
        return None

    def _capture_loop(self, sink: BatchSink, stop: threading.Event, resume: _Resume) -> None:
        settings = self.settings
        present = segment_numbers(self.spool_dir)
        resumable = resume.position is not None and resume.position.segment in present
        if resume.position is not None and not resumable:
            log.warning("%s: the spool segment of the last capture is gone; resuming at the next one", self.name)
        reader = self._reader = SpoolReader(self.spool_dir, resume.position)
        splitter = ReceiptSplitter(settings.encoding, synced=resumable)
        splitter.decoder.restore(resume.state)
        seq = resume.seq
        housekeeping_due = 0.0
        while not stop.is_set():
            if self.template is None and not self._load_template(stop):
                continue
            self._reload_template_if_changed()
            assert self.template is not None
            try:
                frames = reader.read()
            except OSError as exc:
                self._set_error("storage", f"cannot read the capture spool: {exc}")
                stop.wait(RETRY_S)
                continue
            for frame in frames:
                if frame.kind == OPEN:
                    self._session_seen = frame.position.segment
                for receipt, end in self._split(splitter, frame):
                    if not receipt.complete:
                        self._keep_fragment(receipt, end)
                    elif self._capture(sink, stop, receipt, seq + 1, end):
                        seq += 1
                    else:
                        return  # stopping while the outbox refused: the spool still holds the receipt
                self._note_sync(splitter)
            self._note_sync(splitter)
            self._refresh_health()
            if time.monotonic() >= housekeeping_due:
                housekeeping_due = time.monotonic() + HOUSEKEEPING_S
                self._purge_archive()
            if not frames:
                self._reprocess(sink, stop)
                self._wake.wait(1.0)
                self._wake.clear()

    def _note_sync(self, splitter: ReceiptSplitter) -> None:
        """Track whether the live port session is in sync (frames of earlier sessions replayed do not count)."""
        session = self.link.spool.session_segment if self.link is not None else None
        synced = session is not None and self._session_seen == session and splitter.synced
        if synced and not self.synced:
            log.info("%s: in sync with the POS port: capturing receipts from here", self.name)
        self.synced = synced

    def _template_stamp(self) -> tuple[int, int] | None:
        if self.settings.template_file is None:
            return None
        try:
            stat = (self.ctx.base_dir / self.settings.template_file).stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _reload_template_if_changed(self) -> None:
        """Pick up an edited template file (at most every couple of seconds); keep the old one if it is bad."""
        if self.settings.template_file is None or time.monotonic() < self._template_checked + TEMPLATE_CHECK_S:
            return
        self._template_checked = time.monotonic()
        stamp = self._template_stamp()
        if stamp == self._template_loaded:
            return
        self._template_loaded = stamp
        try:
            self.template = resolve_template(self.settings, self.ctx.base_dir)
        except TemplateError as exc:
            log.error("%s: the edited template is not usable, keeping the previous one: %s", self.name, exc)
            self.template_error = f"{exc} (the previous version is still in use)"
            return
        log.info("%s: template file changed; receipts from now on are read with the new version", self.name)
        self.template_error = None

    def _load_template(self, stop: threading.Event) -> bool:
        try:
            self._template_loaded = self._template_stamp()
            self._template_checked = time.monotonic()
            self.template = resolve_template(self.settings, self.ctx.base_dir)
        except TemplateError as exc:
            if self.template_error != str(exc):
                log.error("%s: %s; receipts are kept in the spool until the template is fixed", self.name, exc)
            self.template_error = str(exc)
            self._refresh_health()
            stop.wait(RETRY_S * 2)
            return False
        if self.template_error is not None:
            log.info("%s: template loaded; capturing the receipts kept meanwhile", self.name)
        self.template_error = None
        return True

    def _split(self, splitter: ReceiptSplitter, frame: Frame) -> list[tuple[Receipt, Position]]:
        if frame.kind == DATA:
            base = splitter.offset
            done = splitter.feed(frame.payload, frame.at)
            at = frame.position
            return [(r, Position(at.segment, at.offset, frame.skip + r.end - base)) for r in done]
        if frame.kind == IDLE:
            done = splitter.idle(ends_receipt=self.settings.idle_gap > 0)
        elif frame.kind == OPEN:
            done = splitter.interrupt("cut short: the port was (re)opened before it ended")
        elif frame.kind == CLOSE:
            why = frame.payload.decode("utf-8", "replace")
            done = splitter.interrupt(f"cut short: the port closed before it ended ({why})")
        elif frame.kind == GAP:
            done = splitter.interrupt("cut short: bytes were lost because the spool could not be written")
        else:
            done = []
        return [(r, frame.next) for r in done]

    # -- one receipt -------------------------------------------------------------------------

    def _archive_path(self, receipt: Receipt, name: str) -> Path:
        day = datetime.fromtimestamp(receipt.started_at or time.time(), self.ctx.timezone).date()
        return self.root / day.isoformat() / f"{name}.escpos.gz"

    def _capture(self, sink: BatchSink, stop: threading.Event, receipt: Receipt, seq: int, end: Position) -> bool:
        """Archive, read and store one receipt; return False only if stopped before it was stored."""
        assert self.template is not None
        archive = _unused_for(self._archive_path(receipt, f"{seq:06d}"), receipt.raw)
        kept_as = str(archive.relative_to(self.ctx.data_dir))
        ref = f"{self.name} capture {seq:06d}"
        outcome = read_receipt(receipt, ref, self.template, self.settings, self.ctx, kept_as=kept_as)
        value = {"seq": seq, **_position(end), "state": receipt.state, "archive": kept_as}
        batch = Batch(movements=outcome.movements, issues=outcome.issues, cursor=Cursor(CURSOR_KEY, value))
        if not self._retry(stop, "archive", lambda: write_archive(archive, receipt.raw)):
            return False
        stored = self._retry(stop, "outbox", lambda: sink.submit(batch))
        if not stored:
            return False
        assert self._reader is not None
        self._reader.delete_before(end.segment)
        self._report(outcome, kept_as)
        return True

    def _retry(self, stop: threading.Event, what: str, action: Callable[[], object]) -> bool:
        while not stop.is_set():
            try:
                action()
            except Exception as exc:  # CaptureRefused or OSError; anything else is a defect, retried the same way
                if not isinstance(exc, OSError | CaptureRefused):
                    log.exception("%s: unexpected error while storing a receipt", self.name)
                problem = f"cannot write the receipt archive: {exc}" if what == "archive" else f"cannot store: {exc}"
                if self.storage_error != problem:
                    log.error("%s: %s; retrying every %.0f s (the receipt waits)", self.name, problem, RETRY_S)
                self._set_error("storage", problem)
                stop.wait(RETRY_S)
                continue
            if self.storage_error is not None:
                log.info("%s: storing receipts again", self.name)
                self.storage_error = None
            return True
        return False

    def _report(self, outcome: ReceiptOutcome, kept_as: str) -> None:
        self.captured_receipts += 1
        self.health.captured += len(outcome.movements)
        self.health.last_capture_at = time.time()
        if outcome.status == "parsed":
            assert outcome.parsed is not None
            log.info(
                "%s: %s: transaction %s, %d movement(s)%s",
                self.name,
                outcome.ref,
                outcome.parsed.transaction,
                len(outcome.movements),
                f", {len(outcome.issues)} line(s) need attention" if outcome.issues else "",
            )
        elif outcome.status == "skipped":
            assert outcome.skipped is not None
            log.info("%s: %s is not a sale (%r); archived as %s", self.name, outcome.ref, outcome.skipped.line, kept_as)
        else:
            log.warning(
                "%s: %s could not be read (%s); it is in the exception queue", self.name, outcome.ref, outcome.reason
            )

    def _keep_fragment(self, fragment: Receipt, end: Position) -> None:
        path = self._archive_path(fragment, f"partial-{end.segment:010d}-{end.offset:010d}-{end.skip}")
        try:
            write_archive(path, fragment.raw)
            kept = f"; kept as {path.relative_to(self.ctx.data_dir)}"
        except OSError as exc:
            kept = f"; could not be archived ({exc})"
        first = next((line.text.strip() for line in fragment.lines if line.text.strip()), "")
        log.warning(
            "%s: discarded part of a receipt (%d bytes, %d lines, starting %r): %s%s",
            self.name,
            len(fragment.raw),
            len(fragment.lines),
            first[:40],
            fragment.ended_by,
            kept,
        )

    # -- reprocessing archived receipts ------------------------------------------------------

    def _reprocess(self, sink: BatchSink, stop: threading.Event) -> None:
        """Capture receipt files an operator put into the reprocess folder (after fixing the template)."""
        try:
            names = sorted(p for p in self.reprocess_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        except FileNotFoundError:
            return
        assert self.template is not None
        for path in names:
            if stop.is_set():
                return
            try:
                data = read_capture(path)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                log.error("%s: cannot read %s for reprocessing: %s", self.name, path.name, exc)
                self._move(path, self.reprocess_dir / "failed")
                continue
            prefix = f"{self.name} reprocess {path.name} receipt"
            outcomes = replay_receipts(self.settings, self.ctx, data, self.template, prefix)
            batch = Batch(
                movements=[m for o in outcomes for m in o.movements], issues=[i for o in outcomes for i in o.issues]
            )
            if not self._retry(stop, "outbox", functools.partial(sink.submit, batch)):
                return
            self.health.captured += len(batch.movements)
            self._move(path, self.reprocess_dir / "done")
            log.info(
                "%s: reprocessed %s: %d receipt(s), %d movement(s), %d not readable",
                self.name,
                path.name,
                len(outcomes),
                len(batch.movements),
                sum(1 for o in outcomes if o.status in ("unparsed", "partial")),
            )

    def _move(self, path: Path, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.replace(folder / path.name)
        except OSError as exc:
            log.error("%s: cannot move %s to %s: %s", self.name, path.name, folder, exc)

    # -- housekeeping and health -------------------------------------------------------------

    def _purge_archive(self) -> None:
        today = datetime.now(self.ctx.timezone).date()
        oldest = today - timedelta(days=self.settings.receipt_retention_days)
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir() and _DAY.match(p.name)]
        except FileNotFoundError:
            return
        purged = 0
        for folder in folders:
            try:
                if date.fromisoformat(folder.name) < oldest:
                    shutil.rmtree(folder)
                    purged += 1
            except (ValueError, OSError) as exc:
                log.warning("%s: retention: cannot remove %s: %s", self.name, folder, exc)
        if purged:
            log.info("%s: retention: removed %d day folder(s) of receipts older than %s", self.name, purged, oldest)

    def _set_error(self, kind: str, message: str) -> None:
        if kind == "storage":
            self.storage_error = message
        self._refresh_health()

    def _refresh_health(self) -> None:
        link = self.link
        problems = [
            link.pos_error if link else None,
            self.template_error,
            self.storage_error,
            link.spool_error if link else None,
            link.printer_error if link else None,
        ]
        problem = next((p for p in problems if p), None)
        if problem is not None:
            self.health.state, self.health.last_error = "error", problem
        elif link is not None and link.pos is not None and self.synced:
            self.health.state, self.health.last_error = "ok", None
        else:
            self.health.state, self.health.last_error = "starting", None


def _position(position: Position) -> dict[str, int]:
    return {"segment": position.segment, "offset": position.offset, "skip": position.skip}


def build(settings: SerialTapSettings, ctx: SourceContext) -> SerialTapSource:
    """Build a serial_tap source (the factory registered for ``kind = "serial_tap"``)."""
    return SerialTapSource(settings, ctx)


def replay_receipts(
    settings: SerialTapSettings,
    ctx: SourceContext,
    data: bytes,
    template: ReceiptTemplate,
    prefix: str | None = None,
) -> list[ReceiptOutcome]:
    """Decode, split and read a recorded capture (which starts at a receipt boundary), receipt by receipt.

    Receipts are numbered from 1 in the recording and named ``<prefix> 000001``; the prefix defaults to
    ``<source> capture``, the name live captures have.
    """
    prefix = prefix or f"{settings.name} capture"
    outcomes = []
    for number, receipt in enumerate(split_recording(data, settings.encoding), start=1):
        ref = f"{prefix} {number:06d}"
        if receipt.complete:
            outcomes.append(read_receipt(receipt, ref, template, settings, ctx))
        else:
            outcomes.append(ReceiptOutcome(ref, receipt, reason=receipt.ended_by))
    return outcomes


def replay(settings: SerialTapSettings, ctx: SourceContext, path: Path) -> Iterator[Batch]:
    """Read a recorded capture file the way the live source would: one batch per receipt, no port."""
    template = resolve_template(settings, ctx.base_dir)
    for outcome in replay_receipts(settings, ctx, read_capture(path), template):
        yield Batch(movements=outcome.movements, issues=outcome.issues)


register("serial_tap", SerialTapSettings, build, replay)
