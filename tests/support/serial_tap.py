"""Test support for the serial tap: receipts produced by python-escpos, and pseudo-terminal pairs.

python-escpos is an independent implementation of ESC/POS: receipts built here are what a real POS
driver sends, not what our decoder expects. Receipts follow the layout of the built-in template
``generic-58mm``; ``Sale`` keeps what the receipt means so tests can check captures against it
without reading the receipt back.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import random
import select
import struct
import termios
import threading
import time
import tty
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from agent.domain import Kind, make_event_id

logging.getLogger("escpos").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="escpos")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CAPTURE = ROOT / "tests" / "fixtures" / "serial_tap" / "sample-capture" / "input.escpos"

DESCRIPTIONS = {
    "SKU-1001": "Trail Runner 42",
    "SKU-1002": "Trail Runner 43",
    "SKU-1003": "Trail Runner 44",
    "SKU-2001": "Wool Sock 3-pack",
    "SKU-2002": "Cotton Sock 6-pack",
    "SKU-3001": "Shoe Cleaner 200ml",
    "SKU-3002": "Lace Set Black",
    "SKU-4001": "Rain Jacket M",
    "SKU-4002": "Rain Jacket L",
    "SKU-5001": "Insole Gel",
}
PRICES = {
    sku: Decimal(p)
    for sku, p in zip(
        DESCRIPTIONS, ("89", "89", "89", "14.5", "9.9", "7.25", "3.5", "129", "129", "19.99"), strict=True
    )
}
# Text a POS prints that needs code-page switches (python-escpos picks and selects the code pages).
ACCENTED = ["Café Zürich – Straße", "Ελλάδα € 5", "Привет, Øresund ñ"]  # noqa: RUF001 - the en dash is on purpose


@dataclass
class Sale:
    """What one receipt means: its transaction, its lines (sku, quantity, voided) and whether it is a return."""

    txn: str
    lines: list[tuple[str, int, bool]]
    terminal: str = "R3"
    when: datetime = field(default_factory=lambda: datetime(2026, 11, 20, 10, 0))
    is_return: bool = False

    def event_ids(self, store: str = "S001") -> set[str]:
        """The event ids of the movements this receipt must produce (voided lines move nothing)."""
        kind = Kind.RETURN if self.is_return else Kind.SALE
        return {make_event_id(store, self.txn, n, kind) for n, (_, _, v) in enumerate(self.lines, 1) if not v}

    def deltas(self) -> dict[str, Decimal]:
        """The stock change per SKU at the store."""
        out: dict[str, Decimal] = {}
        for sku, qty, voided in self.lines:
            if not voided:
                out[sku] = out.get(sku, Decimal(0)) + (Decimal(qty) if self.is_return else -Decimal(qty))
        return out


def _logo(size: tuple[int, int] = (96, 24)):  # type: ignore[no-untyped-def]
    from PIL import Image, ImageDraw

    # A picture whose bytes contain LF, ESC, GS and printable runs: a decoder that reads image data
    # as text or commands would print garbage or end receipts early.
    img = Image.new("1", size, 1)
    draw = ImageDraw.Draw(img)
    for x in range(0, size[0], 7):
        draw.line((x, 0, size[0] - x, size[1] - 1), fill=0)
    draw.rectangle((2, 2, 30, 12), fill=0)
    return img


def receipt_bytes(
    sale: Sale,
    *,
    image: str | None = None,
    qr: str | None = None,
    accented: str | None = None,
    barcode: bool = True,
    cut: bool = True,
) -> bytes:
    """Build one generic-58mm receipt with python-escpos.

    ``image``: None or a python-escpos image implementation (``bitImageRaster``, ``graphics``,
    ``bitImageColumn``); ``qr``: None, ``native`` (GS ( k) or ``image``; ``accented``: a line of text
    that makes python-escpos switch code pages.
    """
    from escpos.printer import Dummy

    p = Dummy()
    with contextlib.redirect_stdout(io.StringIO()):  # python-escpos prints notes to stdout
        _generic_58mm(p, sale, image, qr, accented, barcode)
    if cut:
        p.cut()
    return bytes(p.output)


def _generic_58mm(p, sale: Sale, image: str | None, qr: str | None, accented: str | None, barcode: bool) -> None:  # type: ignore[no-untyped-def]
    p.hw("INIT")
    if image:
        p.image(_logo(), impl=image)
    p.set(align="center", bold=True, double_height=True)
    p.text("ACME OUTDOOR #S001\n")
    p.set_with_default(align="center")
    p.text(accented + "\n" if accented else "123 Main St, Springfield\n")
    p.text("-" * 32 + "\n")
    p.set(align="left")
    p.text(f"REG {sale.terminal}  TXN {sale.txn}\n")
    p.text(f"{sale.when:%Y-%m-%d %H:%M}\n")
    if sale.is_return:
        p.set(bold=True)
        p.text("*** RETURN ***\n")
        p.set(bold=False)
    total = Decimal(0)
    sign = -1 if sale.is_return else 1
    for sku, qty, voided in sale.lines:
        price = PRICES[sku]
        amount = sign * qty * price
        p.text(DESCRIPTIONS[sku] + "\n")
        p.text(f"  {qty} x {sku} @ {price:.2f} {amount:>9.2f}\n")
        if voided:
            p.set(underline=1)
            p.text(f"VOID {sku}\n")
            p.set(underline=0)
        else:
            total += amount
    p.text("-" * 32 + "\n")
    p.set(bold=True)
    p.text(f"TOTAL {total:>26.2f}\n")
    p.set(bold=False)
    if barcode:
        p.barcode("{B" + sale.txn, "CODE128", function_type="B")
    if qr:
        p.qr(f"https://acme.example/r/{sale.txn}\nline two\x1bE", native=qr == "native")
    p.text("Thank you!\n")


def upc_receipt_bytes(
    register: str, number: str, lines: list[tuple[str, str, int, str]], *, refund: bool = False
) -> bytes:
    """Build one upc-80mm receipt (US style): ``lines`` are (UPC, description, quantity, price)."""
    from escpos.printer import Dummy

    p = Dummy()
    with contextlib.redirect_stdout(io.StringIO()):
        p.hw("INIT")
        p.set(align="center", double_width=True, double_height=True)
        p.text("ACME OUTDOOR\n")
        p.set_with_default()
        p.text(f"Store 12   Reg {register}   Trans {number}\n")
        p.text("11/20/2026  10:04 AM\n")
        if refund:
            p.text("REFUND\n")
        subtotal = Decimal(0)
        for upc, description, qty, price in lines:
            amount = qty * Decimal(price) * (-1 if refund else 1)
            middle = f" {qty} @ {price}" if qty != 1 else ""
            text = f"{upc} {description}{middle}"
            p.text(f"{text:<32}{amount:>10.2f}\n")
            subtotal += amount
        p.text(f"{'SUBTOTAL':<32}{subtotal:>10.2f}\n")
        tax = (subtotal * Decimal("0.0825")).quantize(Decimal("0.01"))
        p.text(f"{'TAX':<32}{tax:>10.2f}\n{'TOTAL':<32}{subtotal + tax:>10.2f}\n")
        p.barcode(f"{register}{number}", "CODE39")
        p.cut(mode="PART")
    return bytes(p.output)


def golden_mixed_stream() -> bytes:
    """The recording of the golden case ``mixed-receipts`` (how tests/fixtures/serial_tap/mixed-receipts was made).

    Twelve receipts of every kind, then: a receipt whose lines do not add up to its total (not
    parsed), an X report (skipped), a receipt with an implausible quantity on one line (that line is
    an issue, the other is captured), and a receipt without a cut at the end of the recording.
    """
    from escpos.printer import Dummy

    data = b"".join(d for _, d in mixed_sales(12))
    wrong_total = receipt_bytes(Sale("R3-008000", [("SKU-1001", 1, False)]))
    data += wrong_total.replace(b"TOTAL                      89.00", b"TOTAL                      98.00")
    p = Dummy()
    p.text("X REPORT\nREG R3\nSALES 12\n")
    p.cut()
    data += bytes(p.output)
    data += (
        receipt_bytes(Sale("R3-008001", [("SKU-2001", 2, False), ("SKU-3001", 1, False)]))
        .replace(b"  1 x SKU-3001 @ 7.25      7.25", b"  9999999 x SKU-3001 @ 0.00      0.00")
        .replace(b"TOTAL                      36.25", b"TOTAL                      29.00")
    )
    data += receipt_bytes(Sale("R3-008002", [("SKU-5001", 1, False)]), cut=False)
    return data


def mixed_sales(count: int, *, start: int = 7000, seed: int = 5) -> list[tuple[Sale, bytes]]:
    """Receipts of every kind the tap must handle: sales, returns, voids, images, barcodes, QR codes, code pages."""
    rng = random.Random(seed)
    skus = list(DESCRIPTIONS)
    images = [None, "bitImageRaster", "graphics", "bitImageColumn"]
    out = []
    for n in range(count):
        lines = [(rng.choice(skus), rng.randint(1, 3), False) for _ in range(rng.randint(1, 4))]
        if n % 3 == 1:
            sku, qty, _ = lines[0]
            lines[0] = (sku, qty, True)
            lines.append((rng.choice(skus), 1, False))
        sale = Sale(f"R3-{start + n:06d}", lines, when=datetime(2026, 11, 20, 11, n % 60), is_return=n % 4 == 3)
        data = receipt_bytes(
            sale,
            image=images[n % 4],
            qr=[None, "native", "image"][n % 3],
            accented=ACCENTED[n % len(ACCENTED)] if n % 2 == 0 else None,
        )
        out.append((sale, data))
    return out


def awkward_chunks(data: bytes, rng: random.Random, largest: int = 64) -> Iterator[bytes]:
    """Split ``data`` at random places, single bytes included, so commands straddle reads."""
    i = 0
    while i < len(data):
        size = rng.choice((1, 1, 2, 3, rng.randint(1, largest)))
        yield data[i : i + size]
        i += size


class PtyPair:
    """A pseudo-terminal pair in raw mode: the test holds the master (the POS or the printer side),
    the agent opens the slave's path (or a stable symlink to it, like /dev/serial/by-id)."""

    def __init__(self, link: Path | None = None) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.device = os.ttyname(self.slave)
        self.link = link
        if link is not None:
            if link.is_symlink():
                link.unlink()
            link.symlink_to(self.device)
        self._received = bytearray()
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.closed = False

    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.device

    def write(self, data: bytes, rng: random.Random | None = None, pause: float = 0.0) -> None:
        """Write everything, in awkward chunks if ``rng`` is given, pausing between chunks."""
        pieces = awkward_chunks(data, rng) if rng is not None else [data]
        for piece in pieces:
            view = memoryview(piece)
            while view:
                view = view[os.write(self.master, view) :]
            if pause:
                time.sleep(pause)

    def unread(self) -> int:
        """Bytes written to the master that nobody has read from the slave yet."""
        raw = fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def drop_unread(self) -> None:
        """Lose what nobody has read, as a wire does while the agent is not listening."""
        termios.tcflush(self.slave, termios.TCIFLUSH)

    def start_reading(self) -> None:
        """Collect everything the agent writes to this pair (the printer side) in the background."""

        def run() -> None:
            # select with a timeout, not a blocking read: a thread blocked in read() on the master
            # would keep the pty open after close(), and the agent would never see the unplug
            while not self.closed:
                try:
                    ready, _, _ = select.select([self.master], [], [], 0.05)
                    if not ready:
                        continue
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self._received += data

        self._reader = threading.Thread(target=run, daemon=True)
        self._reader.start()

    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    def read_available(self, timeout: float = 0.5) -> bytes:
        """Read what the agent wrote to this pair within ``timeout`` (for a pair nobody drains)."""
        out = bytearray()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                break
            out += os.read(self.master, 65536)
        return bytes(out)

    def close(self) -> None:
        """Unplug: close both ends (the agent's next read fails) and remove the symlink."""
        if self.closed:
            return
        self.closed = True
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
