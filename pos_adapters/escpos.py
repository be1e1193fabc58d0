"""ESC/POS decoding: from the byte stream a POS sends its receipt printer to printed lines and receipts.

Invariants:
- The decoder walks the stream command by command with each command's real length (fixed parameters,
  NUL-terminated data, length-prefixed data, image sizes), so the payloads of barcodes, 2D codes,
  raster and column images and downloaded characters are never read as text.
- Feeding the same bytes in any chunking yields the same events: an incomplete command waits for the
  rest of its bytes; image payloads are skipped as they stream by, without being buffered.
- Only printable bytes become text, decoded in the code page selected with ``ESC t`` and the
  international character set selected with ``ESC R``; ``ESC @`` returns to the power-on state.
- The splitter ends a receipt at a paper cut (``GS V``, ``ESC i``, ``ESC m``), at an idle gap when
  asked to, or at the end of a recording. An idle gap that ends a receipt also ends a half-received
  command (a broken print job), so its declared length cannot swallow the next receipt. Bytes whose
  beginning it did not see (before it is in sync, or cut short by a broken stream) come out as
  fragments (``complete=False``), never as receipts.
- Nothing here does I/O or looks at the clock: the caller says when the line went quiet.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field, replace
from typing import Any

ESC, FS, GS, DLE = 0x1B, 0x1C, 0x1D, 0x10
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C

MAX_RECEIPT_BYTES = 4 * 1024 * 1024
"""A receipt longer than this without a cut is cut short as a fragment (a runaway stream, not a sale)."""

MAX_NUL_DATA = 255
"""NUL-terminated data (barcodes, tab stops) longer than this is not a real command."""

# ESC t n: Epson's character code tables, as Python codecs (None: no codec; bytes >= 0x80 show as U+FFFD).
CODE_PAGES: dict[int, str | None] = {
    0: "cp437",
    1: None,  # Katakana
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    11: None,  # PC851 Greek
    12: None,  # PC853 Turkish
    13: "cp857",
    14: "cp737",
    15: "iso8859_7",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
    21: "cp874",
    32: "cp720",
    33: "cp775",
    34: "cp855",
    35: "cp861",
    36: "cp862",
    37: "cp864",
    38: "cp869",
    39: "iso8859_2",
    40: "iso8859_15",
    44: "cp1125",
    45: "cp1250",
    46: "cp1251",
    47: "cp1253",
    48: "cp1254",
    49: "cp1255",
    50: "cp1256",
    51: "cp1257",
    52: "cp1258",
    53: "kz1048",
}

# ESC R n: the twelve ASCII positions an international character set replaces.
_INTL_POSITIONS = "#$@[\\]^`{|}~"
_INTL_SETS: dict[int, str] = {
    1: "#$à°ç§^`éùè¨",  # France
    2: "#$§ÄÖÜ^`äöüß",  # Germany
    3: "£$@[\\]^`{|}~",  # United Kingdom
    4: "#$@ÆØÅ^`æøå~",  # Denmark I
    5: "#¤ÉÄÖÅÜéäöåü",  # Sweden
    6: "#$@°\\é^ùàòèì",  # Italy
    7: "₧$@¡Ñ¿^`¨ñ}~",  # Spain I
    8: "#$@[¥]^`{|}~",  # Japan
    9: "#¤ÉÆØÅÜéæøåü",  # Norway
    10: "#$ÉÆØÅÜéæøåü",  # Denmark II
    11: "#$á¡Ñ¿é`íñóú",  # Spain II
    12: "#$á¡Ñ¿éüíñóú",  # Latin America
    13: "#$@[₩]^`{|}~",  # Korea
}
_INTL_TABLES = {n: str.maketrans(_INTL_POSITIONS, chars) for n, chars in _INTL_SETS.items()}

_BARCODES = {
    0: "UPC-A",
    1: "UPC-E",
    2: "EAN13",
    3: "EAN8",
    4: "CODE39",
    5: "ITF",
    6: "CODABAR",
    65: "UPC-A",
    66: "UPC-E",
    67: "EAN13",
    68: "EAN8",
    69: "CODE39",
    70: "ITF",
    71: "CODABAR",
    72: "CODE93",
    73: "CODE128",
    74: "GS1-128",
    75: "GS1 DataBar Omnidirectional",
    76: "GS1 DataBar Truncated",
    77: "GS1 DataBar Limited",
    78: "GS1 DataBar Expanded",
    79: "CODE128 auto",
}
_SYMBOLS_2D = {
    48: "PDF417",
    49: "QR",
    50: "MaxiCode",
    51: "GS1 DataBar 2D",
    52: "Composite",
    53: "Aztec",
    54: "DataMatrix",
}
_GRAPHICS_STORE = {67, 68, 83, 84, 112, 113}  # GS ( L / GS 8 L functions that carry image data

# Fixed parameter counts after the command letter.
_ESC_FIXED = {
    **dict.fromkeys(b"@2<LSimv\x0c", 0),
    **dict.fromkeys(b" !%-3=?EGJKMRTUVadejrtu{", 1),
    **dict.fromkeys(b"$\\Bc", 2),
    ord("p"): 3,
    ord("W"): 8,
}
_FS_FIXED = {**dict.fromkeys(b"&.", 0), **dict.fromkeys(b"!-CW", 1), **dict.fromkeys(b"S?p", 2), ord("2"): 74}
_GS_FIXED = {
    **dict.fromkeys(b":c", 0),
    **dict.fromkeys(b"!/BEHITZabfhjrw|", 1),
    **dict.fromkeys(b"$LPW\\", 2),
    **dict.fromkeys(b"^z", 3),
    ord("g"): 4,
}
_FEEDS = {(ESC, ord("J")), (ESC, ord("d")), (ESC, ord("e")), (ESC, ord("K")), (ESC, 0x0C)}
_CONTROL = re.compile(rb"[\x00-\x1f]")


@dataclass(frozen=True, slots=True)
class Style:
    """How a run of text is printed."""

    bold: bool = False
    underline: int = 0
    width: int = 1
    height: int = 1
    inverted: bool = False
    font: int = 0


PLAIN = Style()


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text printed in one style."""

    text: str
    style: Style = PLAIN


@dataclass(frozen=True, slots=True)
class Line:
    """One printed line: its text runs and its alignment."""

    spans: tuple[Span, ...]
    align: str = "left"

    @property
    def text(self) -> str:
        """The line's text without styles."""
        return "".join(span.text for span in self.spans)


@dataclass(frozen=True, slots=True)
class Cut:
    """A paper cut; ``end`` is the stream offset just after the command, ``state`` the decoder's state there."""

    end: int
    partial: bool
    state: tuple[int | None, int] = (None, 0)


@dataclass(frozen=True, slots=True)
class Code:
    """A barcode or 2D symbol and the data it encodes (printed as a symbol, never as text)."""

    symbology: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Image:
    """An image whose payload was skipped."""

    kind: str
    size: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the decoder could not interpret exactly (an unknown command or code page)."""

    offset: int
    text: str


Event = Line | Cut | Code | Image | Notice


class Decoder:
    """Incremental ESC/POS decoder: ``feed`` bytes in any chunking, get printed lines and commands."""

    def __init__(self, encoding: str = "cp437") -> None:
        """Start with the printer's power-on code page ``encoding`` (its setting until the POS sends ``ESC t``)."""
        codecs.lookup(encoding)
        self.power_on = encoding
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._skip = 0  # image payload bytes still to skip
        self._nv_images = 0  # FS q: images still to come
        self._events: list[Event] = []
        self._text = bytearray()
        self._spans: list[Span] = []
        self._style = PLAIN
        self._align = "left"
        self._table: int | None = None
        self._codec: str | None = encoding
        self._intl = 0

    # -- state that outlives a receipt (stored with the capture cursor) ----------------------

    def state(self) -> dict[str, Any]:
        """Return the character-set state, which a POS may set once and rely on for many receipts."""
        return {"table": self._table, "intl": self._intl}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore a state returned by ``state``."""
        table = state.get("table")
        self._select_table(int(table) if table is not None else None)
        self._intl = int(state.get("intl") or 0)

    @property
    def offset(self) -> int:
        """Stream offset just after the last byte fed."""
        return self._base + len(self._buf)

    # -- feeding --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Decode ``data``; return the events completed by it."""
        view = memoryview(data)
        if self._skip and not self._buf:
            take = min(self._skip, len(view))
            self._skip -= take
            self._base += take
            view = view[take:]
        self._buf += view
        self._parse()
        return self._take_events()

    @property
    def pending(self) -> bool:
        """True while a command is half received (its remaining bytes are still expected)."""
        return bool(self._buf) or self._skip > 0

    def flush(self) -> list[Event]:
        """End of the data: print any text still waiting for a line feed."""
        self._end_line(force=False)
        return self._take_events()

    def interrupt(self) -> list[Event]:
        """Forget a half-received command (the stream broke); return the text printed so far."""
        self._base += len(self._buf)
        self._buf.clear()
        self._skip = 0
        self._nv_images = 0
        return self.flush()

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _parse(self) -> None:
        buf = self._buf
        n = len(buf)
        i = 0
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                continue
            if self._nv_images:
                used = self._nv_image_header(buf, i, n)
                if used is None:
                    break
                i += used
                continue
            byte = buf[i]
            if byte >= 0x20:
                match = _CONTROL.search(buf, i)
                end = match.start() if match else n
                self._text += buf[i:end]
                i = end
            elif byte in (LF, FF):
                self._end_line(force=True)
                i += 1
            elif byte == HT:
                self._text.append(0x09)
                i += 1
            elif byte in (ESC, FS, GS, DLE):
                used = self._command(buf, i, n)
                if used is None:
                    break
                i += used
            else:
                i += 1  # CR, NUL, CAN and other controls print nothing
        del buf[:i]
        self._base += i

    # -- commands -------------------------------------------------------------------------------

    def _command(self, buf: bytearray, i: int, n: int) -> int | None:
        """Consume the command at ``buf[i]``; return its length, or None until more bytes arrive."""
        prefix = buf[i]
        if n - i < 2:
            return None
        letter = buf[i + 1]
        if prefix == DLE:
            return self._dle(buf, i, n, letter)
        fixed = (_ESC_FIXED if prefix == ESC else _FS_FIXED if prefix == FS else _GS_FIXED).get(letter)
        if fixed is not None:
            if n - i < 2 + fixed:
                return None
            self._fixed(prefix, letter, buf, i)
            return 2 + fixed
        if letter == 0x28:  # "(": ESC ( / FS ( / GS ( fn pL pH data
            return self._length_prefixed(buf, i, n)
        if prefix == ESC:
            return self._esc_variable(buf, i, n, letter)
        if prefix == FS:
            return self._fs_variable(buf, i, n, letter)
        return self._gs_variable(buf, i, n, letter)

    def _dle(self, buf: bytearray, i: int, n: int, letter: int) -> int | None:
        if letter not in (0x04, 0x05, 0x14):
            return 1  # a lone DLE prints nothing
        if n - i < 3:
            return None
        if letter == 0x04:  # DLE EOT n [a]: real-time status
            size = 4 if buf[i + 2] in (7, 8) else 3
        elif letter == 0x05:  # DLE ENQ n
            size = 3
        else:  # DLE DC4 fn ...
            size = {1: 5, 2: 5, 3: 8, 7: 4, 8: 10}.get(buf[i + 2], 3)
        return size if n - i >= size else None

    def _fixed(self, prefix: int, letter: int, buf: bytearray, i: int) -> None:
        arg = buf[i + 2] if len(buf) > i + 2 else 0
        if (prefix, letter) in _FEEDS:
            self._end_line(force=False)
        elif prefix == ESC:
            self._esc(letter, arg, buf, i)
        elif prefix == GS:
            self._gs(letter, arg)
        elif prefix == FS and letter == ord("p"):
            self._end_line(force=False)
            self._events.append(Image("NV image", 0))

    def _esc(self, letter: int, arg: int, buf: bytearray, i: int) -> None:
        style = self._style
        if letter == ord("@"):
            self._end_line(force=False)
            self._style, self._align, self._intl = PLAIN, "left", 0
            self._select_table(None)
        elif letter == ord("!"):
            self._set_style(
                replace(
                    style,
                    font=arg & 1,
                    bold=bool(arg & 0x08),
                    height=2 if arg & 0x10 else 1,
                    width=2 if arg & 0x20 else 1,
                    underline=1 if arg & 0x80 else 0,
                )
            )
        elif letter in (ord("E"), ord("G")):
            self._set_style(replace(style, bold=bool(arg & 1)))
        elif letter == ord("-"):
            self._set_style(replace(style, underline=arg & 0x03 if arg < 0x30 else arg - 0x30))
        elif letter == ord("M"):
            self._set_style(replace(style, font=arg & 0x0F if arg < 0x30 else arg - 0x30))
        elif letter == ord("a"):
            self._align = {0: "left", 1: "center", 2: "right"}.get(arg % 0x30, "left")
        elif letter == ord("t"):
            self._close_span()
            self._select_table(arg)
            if CODE_PAGES.get(arg) is None:
                self._events.append(
                    Notice(self._base + i, f"code page {arg} (ESC t {arg}) is not known: accented characters show as ?")
                )
        elif letter == ord("R"):
            self._close_span()
            self._intl = arg if arg in _INTL_TABLES else 0
        elif letter in (ord("i"), ord("m")):
            self._cut(self._base + i + 2, partial=letter == ord("m"))

    def _gs(self, letter: int, arg: int) -> None:
        if letter == ord("!"):
            self._set_style(replace(self._style, width=(arg >> 4 & 0x07) + 1, height=(arg & 0x07) + 1))
        elif letter == ord("B"):
            self._set_style(replace(self._style, inverted=bool(arg & 1)))
        elif letter == ord("/"):
            self._end_line(force=False)
            self._events.append(Image("downloaded image", 0))

    def _length_prefixed(self, buf: bytearray, i: int, n: int) -> int | None:
        if n - i < 5:
            return None
        prefix, fn = buf[i], buf[i + 2]
        size = buf[i + 3] | buf[i + 4] << 8
        total = 5 + size
        if prefix == GS and fn == ord("L"):
            return self._graphics(buf, i, n, header=5, size=size)
        if n - i < total:
            return None
        if prefix == GS and fn == ord("k") and size >= 3:
            cn, function = buf[i + 5], buf[i + 6]
            if function == 80:  # store the symbol data (cn fn m d1...dk)
                self._events.append(Code(_SYMBOLS_2D.get(cn, f"2D symbol {cn}"), bytes(buf[i + 8 : i + total])))
        return total

    def _graphics(self, buf: bytearray, i: int, n: int, *, header: int, size: int) -> int | None:
        """GS ( L / GS 8 L: graphics data, skipped as it streams by."""
        if size >= 2:
            if n - i < header + 2:
                return None
            if buf[i + header + 1] in _GRAPHICS_STORE:
                self._end_line(force=False)
                self._events.append(Image("graphics", size))
        return self._skip_payload(i, n, header + size)

    def _skip_payload(self, i: int, n: int, total: int) -> int:
        available = n - i
        if available >= total:
            return total
        self._skip = total - available
        return available

    def _esc_variable(self, buf: bytearray, i: int, n: int, letter: int) -> int | None:
        if letter == ord("*"):  # ESC * m nL nH d1...dk: column bit image
            if n - i < 5:
                return None
            dots = buf[i + 3] | buf[i + 4] << 8
            per_column = 1 if buf[i + 2] in (0, 1) else 3
            self._end_line(force=False)
            self._events.append(Image("bit image", dots * per_column))
            return self._skip_payload(i, n, 5 + dots * per_column)
        if letter == ord("D"):  # ESC D n1...nk NUL: tab stops
            return self._until_nul(buf, i, n, 2, None)
        if letter == ord("&"):  # ESC & y c1 c2 [x d1...d(y*x)]...: user-defined characters
            if n - i < 5:
                return None
            y, first, last = buf[i + 2], buf[i + 3], buf[i + 4]
            at = i + 5
            for _ in range(max(last - first + 1, 0)):
                if at >= n:
                    return None
                at += 1 + y * buf[at]
            return at - i if at <= n else None
        return self._unknown(buf, i)

    def _fs_variable(self, buf: bytearray, i: int, n: int, letter: int) -> int | None:
        if letter == ord("q"):  # FS q n [xL xH yL yH d1...dk]1...[...]n: define NV bit images
            if n - i < 3:
                return None
            self._nv_images = buf[i + 2]
            return 3
        return self._unknown(buf, i)

    def _nv_image_header(self, buf: bytearray, i: int, n: int) -> int | None:
        if n - i < 4:
            return None
        size = (buf[i] | buf[i + 1] << 8) * (buf[i + 2] | buf[i + 3] << 8) * 8
        self._nv_images -= 1
        self._events.append(Image("NV bit image", size))
        return self._skip_payload(i, n, 4 + size)

    def _gs_variable(self, buf: bytearray, i: int, n: int, letter: int) -> int | None:
        if letter == ord("V"):  # GS V m [n]: cut
            if n - i < 3:
                return None
            mode = buf[i + 2]
            size = 4 if mode in (65, 66, 97, 98, 103, 104) else 3
            if n - i < size:
                return None
            self._cut(self._base + i + size, partial=mode in (1, 49, 66, 98, 104))
            return size
        if letter == ord("k"):  # GS k m ...: barcode
            if n - i < 3:
                return None
            kind = buf[i + 2]
            if kind <= 6:
                return self._until_nul(buf, i, n, 3, _BARCODES[kind])
            if n - i < 4:
                return None
            total = 4 + buf[i + 3]
            if n - i < total:
                return None
            self._events.append(Code(_BARCODES.get(kind, f"barcode {kind}"), bytes(buf[i + 4 : i + total])))
            return total
        if letter == ord("v"):  # GS v 0 m xL xH yL yH d1...dk: raster bit image
            if n - i < 8:
                return None
            size = (buf[i + 4] | buf[i + 5] << 8) * (buf[i + 6] | buf[i + 7] << 8)
            self._end_line(force=False)
            self._events.append(Image("raster image", size))
            return self._skip_payload(i, n, 8 + size)
        if letter == ord("*"):  # GS * x y d1...d(x*y*8): define downloaded bit image
            if n - i < 4:
                return None
            return self._skip_payload(i, n, 4 + buf[i + 2] * buf[i + 3] * 8)
        if letter == ord("8"):  # GS 8 L p1 p2 p3 p4 m fn ...: graphics with a 4-byte length
            if n - i < 7:
                return None
            size = int.from_bytes(buf[i + 3 : i + 7], "little")
            return self._graphics(buf, i, n, header=7, size=size)
        return self._unknown(buf, i)

    def _until_nul(self, buf: bytearray, i: int, n: int, header: int, barcode: str | None) -> int | None:
        end = buf.find(0, i + header, min(n, i + header + MAX_NUL_DATA + 1))
        if end < 0:
            if n - (i + header) <= MAX_NUL_DATA:
                return None
            self._events.append(Notice(self._base + i, "a command's data has no NUL terminator; skipped its header"))
            return header
        if barcode is not None:
            self._events.append(Code(barcode, bytes(buf[i + header : end])))
        return end + 1 - i

    def _unknown(self, buf: bytearray, i: int) -> int:
        name = {ESC: "ESC", FS: "FS", GS: "GS"}[buf[i]]
        letter = buf[i + 1]
        shown = chr(letter) if 0x21 <= letter < 0x7F else f"0x{letter:02X}"
        text = f"unknown command {name} {shown}; read on as if it had no parameters"
        self._events.append(Notice(self._base + i, text))
        return 2

    # -- text -----------------------------------------------------------------------------------

    def _select_table(self, table: int | None) -> None:
        self._table = table
        self._codec = self.power_on if table is None else CODE_PAGES.get(table)

    def _set_style(self, style: Style) -> None:
        if style != self._style:
            self._close_span()
            self._style = style

    def _close_span(self) -> None:
        if not self._text:
            return
        raw = bytes(self._text)
        self._text.clear()
        text = raw.decode(self._codec or "ascii", "replace")
        if self._intl:
            text = text.translate(_INTL_TABLES[self._intl])
        self._spans.append(Span(text, self._style))

    def _end_line(self, *, force: bool) -> None:
        """Print the text buffer as a line (``force``: even an empty one, as a line feed does)."""
        self._close_span()
        if self._spans or force:
            self._events.append(Line(tuple(self._spans), self._align))
            self._spans = []

    def _cut(self, end: int, *, partial: bool) -> None:
        self._end_line(force=False)
        self._events.append(Cut(end, partial, (self._table, self._intl)))


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt (or fragment) as printed: raw bytes, printed lines, symbols and what ended it."""

    raw: bytes
    lines: tuple[Line, ...]
    codes: tuple[Code, ...] = ()
    notes: tuple[str, ...] = ()
    images: int = 0
    start: int = 0
    end: int = 0
    ended_by: str = "cut"
    complete: bool = True
    started_at: float | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The printed text, one line per line."""
        return "\n".join(line.text for line in self.lines)


@dataclass
class _Open:
    raw: bytearray = field(default_factory=bytearray)
    lines: list[Line] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: int = 0
    started_at: float | None = None


class ReceiptSplitter:
    """Splits an ESC/POS stream into receipts at cuts, idle gaps and the end of a recording.

    ``synced`` says whether the splitter saw the beginning of the current receipt; until it is in sync
    (at the next cut or idle gap), what it reads comes out as a fragment, never as a receipt.
    """

    def __init__(self, encoding: str = "cp437", *, synced: bool = True, max_bytes: int = MAX_RECEIPT_BYTES) -> None:
        """Start at stream offset 0 with the printer's power-on ``encoding``."""
        self.decoder = Decoder(encoding)
        self.synced = synced
        self.max_bytes = max_bytes
        self._open = _Open()
        self._start = 0
        self._offset = 0

    @property
    def offset(self) -> int:
        """Stream offset just after the last byte fed."""
        return self._offset

    @property
    def pending(self) -> int:
        """Bytes read since the last receipt ended."""
        return self._offset - self._start

    def feed(self, data: bytes, at: float | None = None) -> list[Receipt]:
        """Feed bytes (read at time ``at``); return the receipts and fragments they complete."""
        if not data:
            return []
        current = self._open
        if current.started_at is None:
            current.started_at = at
        current.raw += data
        self._offset += len(data)
        out: list[Receipt] = []
        for event in self.decoder.feed(data):
            if isinstance(event, Cut):
                table, intl = event.state
                out += self._close(event.end, "cut", at=at, state={"table": table, "intl": intl})
            else:
                self._note(event)
        if self._offset - self._start > self.max_bytes:
            self._open.notes.append(f"no cut after {self.max_bytes // 1048576} MiB")
            out += self._close(self._offset, "size limit", complete=False)
            self.synced = False
        return out

    def idle(self, *, ends_receipt: bool) -> list[Receipt]:
        """Note that the line went quiet: the splitter is in sync, and the receipt ends if ``ends_receipt``."""
        if self.synced and not ends_receipt:
            return []
        if ends_receipt and self.decoder.pending:
            # A POS never pauses for a whole idle gap inside one command: a broken job must not eat the next one.
            self._open.notes.append("a command was cut short by the idle gap; the rest of it was not waited for")
            events = self.decoder.interrupt()
        else:
            events = self.decoder.flush()
        for event in events:
            self._note(event)
        complete = self.synced
        self.synced = True
        return self._close(self._offset, "idle gap" if complete else "idle gap before sync", complete=complete)

    def interrupt(self, why: str) -> list[Receipt]:
        """Break the stream (port closed or reopened, bytes lost): what is open becomes a fragment."""
        for event in self.decoder.interrupt():
            self._note(event)
        self.synced = False
        return self._close(self._offset, why, complete=False)

    def finish(self) -> list[Receipt]:
        """End of a recording: the bytes after the last cut end a receipt."""
        for event in self.decoder.flush():
            self._note(event)
        complete = self.synced
        return self._close(self._offset, "end of recording", complete=complete)

    def _note(self, event: Event) -> None:
        current = self._open
        if isinstance(event, Line):
            current.lines.append(event)
        elif isinstance(event, Code):
            current.codes.append(event)
        elif isinstance(event, Image):
            current.images += 1
        elif isinstance(event, Notice):
            current.notes.append(f"byte {event.offset - self._start}: {event.text}")

    def _close(
        self,
        end: int,
        how: str,
        *,
        complete: bool | None = None,
        at: float | None = None,
        state: dict[str, Any] | None = None,
    ) -> list[Receipt]:
        current = self._open
        size = end - self._start
        raw = bytes(current.raw[:size])
        rest = current.raw[size:]
        is_complete = self.synced if complete is None else complete
        start = self._start
        self._start = end
        self._open = _Open(raw=rest, started_at=at if rest else None)
        if how == "cut":
            self.synced = True
        if not any(line.text.strip() for line in current.lines):
            return []  # nothing printed: status queries, a drawer kick, a bare cut
        return [
            Receipt(
                raw=raw,
                lines=tuple(current.lines),
                codes=tuple(current.codes),
                notes=tuple(current.notes),
                images=current.images,
                start=start,
                end=end,
                ended_by=how,
                complete=is_complete,
                started_at=current.started_at,
                state=state if state is not None else self.decoder.state(),
            )
        ]


def split_recording(data: bytes, encoding: str = "cp437") -> list[Receipt]:
    """Split a recorded capture (which starts at a receipt boundary) into its receipts."""
    splitter = ReceiptSplitter(encoding, synced=True)
    return [*splitter.feed(data), *splitter.finish()]
