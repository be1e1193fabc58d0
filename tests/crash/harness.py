"""The crash harness: the real agent as a subprocess, fed from every source kind, killed with SIGKILL.

A run keeps a steady store going (CSV export files, a journal, a POS pushing over HTTP, a web shop
polled over REST, receipts on a serial line) while ``possync run`` is SIGKILLed at chosen moments
and restarted. Every feed writes down, independently of possync, what it handed over: the
POS-side ledger. At the end the harness compares it with the WMS ledger line by line.

Kill moments (cycled in order, with random delays):
- ``startup``: while the agent opens and recovers its outbox;
- ``random``: any time while everything flows;
- ``enqueue``: while a large export file is being read and stored;
- ``wms_request``: when a push reaches the WMS, before it is applied;
- ``after_accept``: after the WMS applied a push, before its answer leaves (the agent has not acked);
- ``snapshot``: while the agent pulls a stock snapshot page (when its schedule makes it pull).

What "handed over" means per feed: a file is in the watched folder; a journal line is appended;
a push was answered 202 (the POS retries until it is); an order exists in the web shop; a receipt's
bytes were taken off the serial line by the agent (bytes still in the line's buffer when the agent
dies are lost, as on a real cable with nobody listening; a receipt cut in two that way may or may
not be captured, but never in part and never twice).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from agent.domain import Kind, make_event_id
from tests.support.fake_pos import FakeShopify
from tests.support.helpers import (
    CSV_SOURCE,
    ITEMS_CSV,
    AgentProcess,
    enable_api,
    free_port,
    wait_for,
    write_config,
)
from tests.support.serial_tap import PtyPair, Sale, receipt_bytes
from wms_client.sandbox.server import SandboxServer

STORE = "S001"
SKUS = ["SKU-1001", "SKU-1002", "SKU-1003", "SKU-2001", "SKU-2002", "SKU-3001", "SKU-4001", "SKU-5001"]
MOMENTS = ("startup", "random", "enqueue", "wms_request", "after_accept", "snapshot")
SYNCED = "capturing receipts from here"
API_TOKEN = "crash-harness-api-token-01"
SHOP_TOKEN = "shpat_crash_0123456789"
WMS_TOKEN = "crash-harness-wms-token-01"

Line = tuple[str, Decimal]  # (sku, stock delta at the store)


def _sale_lines(sale: Sale) -> dict[str, Line]:
    """The ledger lines a receipt stands for (voided lines move nothing)."""
    kind = Kind.RETURN if sale.is_return else Kind.SALE
    out: dict[str, Line] = {}
    for n, (sku, qty, voided) in enumerate(sale.lines, 1):
        if not voided:
            out[make_event_id(STORE, sale.txn, n, kind)] = (sku, Decimal(qty if sale.is_return else -qty))
    return out


@dataclass
class PosLedger:
    """What the POS side handed over: event id -> (sku, delta); ``maybe`` holds receipts cut by a kill."""

    must: dict[str, Line] = field(default_factory=dict)
    maybe: list[dict[str, Line]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, txn: str, kind: Kind, lines: list[tuple[int, str, int]]) -> None:
        """Record a transaction's lines (line number, sku, quantity) as handed over."""
        sign = 1 if kind in (Kind.RETURN, Kind.TRANSFER_IN) else -1
        with self.lock:
            for line_no, sku, qty in lines:
                self.must[make_event_id(STORE, txn, line_no, kind)] = (sku, Decimal(sign * qty))

    def add_sale(self, sale: Sale) -> None:
        """Record a receipt the agent took off the line whole."""
        with self.lock:
            self.must.update(_sale_lines(sale))


def _lines(rng: random.Random) -> list[tuple[int, str, int]]:
    return [(n, rng.choice(SKUS), rng.randint(1, 3)) for n in range(1, rng.randint(1, 4) + 1)]


class Feed(threading.Thread):
    """A POS-side producer running until ``stop`` is set."""

    def __init__(self, name: str, ledger: PosLedger, seed: int, every: float) -> None:
        super().__init__(name=name, daemon=True)
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.every = every
        self.stop_event = threading.Event()
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
                self.count += 1
                self.stop_event.wait(self.every * self.rng.uniform(0.5, 1.5))
        except BaseException as exc:  # reported by the harness, not lost in a thread
            self.error = exc

    def step(self) -> None:
        """Hand over one unit of work."""
        raise NotImplementedError

    def finish(self) -> None:
        """Stop producing and wait for the thread."""
        self.stop_event.set()
        self.join(timeout=120)


class CsvFeed(Feed):
    """Export files dropped into the watched folder the careful way (written aside, renamed in)."""

    def __init__(self, inbox: Path, ledger: PosLedger, seed: int) -> None:
        super().__init__("csv-feed", ledger, seed, every=0.4)
        self.inbox = inbox
        self.files = 0
        self.drop_lock = threading.Lock()
        inbox.mkdir(parents=True, exist_ok=True)

    def step(self) -> None:
        self.drop(self.rng.randint(1, 5))

    def drop(self, transactions: int) -> None:
        """Write one export file with ``transactions`` transactions (from any thread)."""
        with self.drop_lock:
            self.files += 1
            number = self.files
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["txn_id", "line", "timestamp", "register", "type", "item", "qty", "uom", "price", "dest"])
        recorded: list[tuple[str, Kind, list[tuple[int, str, int]]]] = []
        for _ in range(transactions):
            txn = f"F-{number:05d}-{len(recorded):04d}"
            kind = Kind.RETURN if self.rng.random() < 0.15 else Kind.SALE
            lines = _lines(self.rng)
            for n, sku, qty in lines:
                code = "RETURN" if kind is Kind.RETURN else "SALE"
                writer.writerow([txn, n, "2026-11-20T10:00:00-06:00", "R1", code, sku, qty, "EA", "9.99", ""])
            recorded.append((txn, kind, lines))
        name = f"pos-{number:05d}.csv"
        staging = self.inbox / f".{name}.part"
        staging.write_text(out.getvalue(), encoding="utf-8")
        staging.replace(self.inbox / name)
        for txn, kind, lines in recorded:
            self.ledger.add(txn, kind, lines)


class JournalFeed(Feed):
    """An electronic journal the POS appends one JSON transaction per line to."""

    def __init__(self, path: Path, ledger: PosLedger, seed: int) -> None:
        super().__init__("journal-feed", ledger, seed, every=0.3)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def step(self) -> None:
        txn = f"J-{self.count:06d}"
        kind = Kind.RETURN if self.rng.random() < 0.15 else Kind.SALE
        lines = _lines(self.rng)
        record = {
            "transaction_id": txn,
            "terminal_id": "R2",
            "occurred_at": "2026-11-20T10:00:00-06:00",
            "kind": str(kind),
            "lines": [{"line_no": n, "item": sku, "quantity": str(q)} for n, sku, q in lines],
        }
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.ledger.add(txn, kind, lines)


class PushFeed(Feed):
    """A POS terminal pushing each transaction to the local ingest endpoint until it is told 202."""

    def __init__(self, url: str, ledger: PosLedger, seed: int) -> None:
        super().__init__("push-feed", ledger, seed, every=0.25)
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
        self.refusals = 0

    def step(self) -> None:
        txn = f"H-{self.count:06d}"
        kind = Kind.RETURN if self.rng.random() < 0.15 else Kind.SALE
        lines = _lines(self.rng)
        body = {
            "transaction_id": txn,
            "terminal_id": "R9",
            "occurred_at": "2026-11-20T10:00:00-06:00",
            "kind": str(kind),
            "lines": [{"line_no": n, "item": sku, "quantity": str(q)} for n, sku, q in lines],
        }
        while True:  # a POS keeps the transaction until the agent has it; it does not give up
            try:
                if self.http.post("/api/v1/transactions", json=body).status_code == 202:
                    break
            except httpx.HTTPError:
                pass
            self.refusals += 1
            time.sleep(0.2)
        self.ledger.add(txn, kind, lines)

    def finish(self) -> None:
        super().finish()
        self.http.close()


class ShopFeed(Feed):
    """A web shop taking orders; the agent polls its REST API."""

    def __init__(self, shop: FakeShopify, ledger: PosLedger, seed: int) -> None:
        super().__init__("shop-feed", ledger, seed, every=0.6)
        self.shop = shop

    def step(self) -> None:
        order_id = 500_000 + self.count
        lines = [(order_id * 10 + n, sku, qty) for n, sku, qty in _lines(self.rng)]
        self.shop.add_order(order_id, [(lid, sku, qty, "5.00") for lid, sku, qty in lines])
        self.ledger.add(f"shopify-{order_id}", Kind.SALE, lines)


class SerialFeed(Feed):
    """A POS printing receipts through the tap; runs only while the agent listens (one life)."""

    def __init__(self, pos: PtyPair, ledger: PosLedger, seed: int, first: int) -> None:
        super().__init__("serial-feed", ledger, seed, every=0.35)
        self.pos = pos
        self.first = first
        self.written = 0
        self.sent: list[tuple[Sale, int]] = []  # each receipt and the stream offset of its last byte

    def step(self) -> None:
        lines = [(self.rng.choice(SKUS), self.rng.randint(1, 3), False) for _ in range(self.rng.randint(1, 3))]
        sale = Sale(f"R3-{self.first + self.count:06d}", lines, is_return=self.rng.random() < 0.15)
        data = receipt_bytes(sale)
        for at in range(0, len(data), 64):  # a 9600-baud line delivers a receipt over a while
            self.pos.write(data[at : at + 64])
            self.written += len(data[at : at + 64])
            time.sleep(0.001)
        self.sent.append((sale, self.written))

    def settle(self) -> tuple[int, int]:
        """After the agent died: record what it took off the line; drop the rest. Returns (taken, cut)."""
        taken = self.written - self.pos.unread()
        self.pos.drop_unread()
        whole = cut = 0
        starts = 0
        for sale, end in self.sent:
            if end <= taken:
                self.ledger.add_sale(sale)
                whole += 1
            elif starts < taken:
                self.ledger.maybe.append(_sale_lines(sale))
                cut += 1
            starts = end
        return whole, cut


@dataclass
class Report:
    """What a run did and found."""

    kills: Counter[str] = field(default_factory=Counter)
    unreached: Counter[str] = field(default_factory=Counter)
    handed_over: int = 0
    applied: int = 0
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    partial_receipts: int = 0
    stock_mismatches: list[str] = field(default_factory=list)  # store stock view vs the WMS, once quiet
    # WMS on-hand vs its opening plus the POS's lines it holds: a line applied to stock twice (or not
    # at all) shows here even though the ledger keeps one row per event id.
    stock_not_ledger: list[str] = field(default_factory=list)
    receipts_cut: int = 0
    open_exceptions: int = 0
    exceptions: list[str] = field(default_factory=list)  # "CODE (source): message" of each open one
    pushes: int = 0
    seconds: float = 0.0

    def unexplained_exceptions(self) -> list[str]:
        """Open exceptions a clean feed cannot explain: all but the receipts a kill cut in two."""
        cut = [e for e in self.exceptions if e.startswith("RECEIPT_") and "(receipt-tap)" in e]
        others = [e for e in self.exceptions if e not in cut]
        return others + (cut[self.receipts_cut :] if len(cut) > self.receipts_cut else [])

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing applied twice, nothing invented or changed."""
        return not (self.lost or self.twice or self.foreign or self.wrong or self.partial_receipts) and not (
            self.stock_mismatches or self.stock_not_ledger
        )

    def summary(self) -> str:
        """One paragraph for logs and the soak command."""
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items()))
        missed = ", ".join(f"{k} {v}" for k, v in sorted(self.unreached.items())) or "none"
        return (
            f"{sum(self.kills.values())} kills ({kills}; moments not reached, killed at random instead: "
            f"{missed}) in {self.seconds:.0f} s; {self.handed_over} lines handed over, {self.applied} applied "
            f"at the WMS over {self.pushes} pushes; lost {len(self.lost)}, "
            f"applied twice {len(self.twice)}, foreign {len(self.foreign)}, changed {len(self.wrong)}, "
            f"receipts captured in part {self.partial_receipts}; stock view "
            f"{'equal to the WMS' if not self.stock_mismatches else self.stock_mismatches[:5]}; WMS stock "
            f"{'equal to opening + lines' if not self.stock_not_ledger else self.stock_not_ledger[:5]}; "
            f"receipts cut by a kill {self.receipts_cut}; "
            f"open exceptions {self.open_exceptions} {self.exceptions}"
        )


SOURCES = """
[[sources]]
name = "ej"
kind = "journal"
path = "./pos/journal.log"
format = "jsonl"
poll_every = "0.2s"
settle = "0.5s"

[[sources]]
name = "register-push"
kind = "http_ingest"

[[sources]]
name = "webshop"
kind = "rest_poll"
url = "{shop}"
preset = "shopify-orders"
every = "1s"
page_size = 20
overlap = "2m"
initial_lookback = "30d"
auth = {{ type = "header", header = "X-Shopify-Access-Token", token = "env:SHOP_TOKEN" }}

[[sources]]
name = "receipt-tap"
kind = "serial_tap"
port = "{tty}"
baudrate = 9600
template = "generic-58mm"
idle_gap = "0.5s"
reconnect_every = "0.3s"
"""


class CrashRun:
    """One crash run in ``workdir``: a sandbox WMS, the feeds, and an agent killed ``kills`` times."""

    def __init__(self, workdir: Path, kills: int, seed: int = 1, log: Callable[[str], None] = lambda _m: None) -> None:
        self.workdir = workdir
        self.kills = kills
        self.rng = random.Random(seed)
        self.seed = seed
        self.log = log
        self.ledger = PosLedger()
        self.report = Report()
        self.sandbox = SandboxServer(workdir / "wms", ITEMS_CSV, WMS_TOKEN, port=0)
        self.shop = FakeShopify(SHOP_TOKEN)
        self.pos = PtyPair(workdir / "ttyPOS")
        self.env = {"POSSYNC_TEST_TOKEN": WMS_TOKEN, "POSSYNC_API_TOKEN": API_TOKEN, "SHOP_TOKEN": SHOP_TOKEN}
        self._armed: str | None = None
        self._fired = threading.Event()
        self._agent: AgentProcess | None = None
        self._lives = 0
        self._syncs_before = 0
        self._serial_next = 100_000

    # -- setup ---------------------------------------------------------------------------------

    def _configure(self) -> Path:
        self.sandbox.start()
        self.shop.start()
        self.sandbox.state.probe = self._probe
        sources = CSV_SOURCE.format(settle="0.2s") + SOURCES.format(shop=self.shop.url, tty=self.pos.path)
        config = write_config(self.workdir, self.sandbox.url, sources=sources, batch_size=50)
        self.api_url = enable_api(config, free_port())
        text = config.read_text(encoding="utf-8")
        text = text.replace("item_master_every", 'snapshot_every = "3s"\nitem_master_every', 1)
        config.write_text(text, encoding="utf-8")
        return config

    def _probe(self, event: str) -> None:
        # Runs inside the sandbox's request handling: the kill lands exactly at this point.
        if self._armed == event and self._agent is not None and self._agent.proc is not None:
            self._armed = None
            os.kill(self._agent.proc.pid, signal.SIGKILL)
            self._fired.set()

    # -- one life ------------------------------------------------------------------------------

    def _start(self, config: Path) -> AgentProcess:
        self._lives += 1
        log = self.workdir / "agent-stderr.log"
        self._syncs_before = log.read_text(errors="replace").count(SYNCED) if log.exists() else 0
        self._agent = AgentProcess(config, self.env).start()
        return self._agent

    def _up(self, agent: AgentProcess, timeout: float = 30) -> bool:
        def api_up() -> bool:
            if not agent.alive():
                return True
            try:
                r = httpx.get(self.api_url + "/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(api_up, timeout=timeout, what="agent's local API up")
        return agent.alive()

    def _tap_in_sync(self, agent: AgentProcess) -> bool:
        """Wait until this life's tap reports it is in sync with the line."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and agent.alive():
            if agent.output().count(SYNCED) > self._syncs_before:
                return True
            time.sleep(0.05)
        return False

    def _kill_at(self, moment: str, agent: AgentProcess, csv_feed: CsvFeed) -> str:
        """Kill ``agent`` at ``moment``; return the moment actually used."""
        if moment == "startup":
            time.sleep(self.rng.uniform(0.05, 1.2))
        elif moment == "random":
            time.sleep(self.rng.uniform(0.1, 3.0))
        elif moment == "enqueue":
            csv_feed.drop(self.rng.randint(300, 1500))
            time.sleep(self.rng.uniform(0.25, 0.9))
        else:
            event = {"wms_request": "push.received", "after_accept": "push.applied", "snapshot": "stock.page"}[moment]
            self._fired.clear()
            self._armed = event
            if self._fired.wait(timeout=8):
                agent.proc.wait(timeout=10)  # type: ignore[union-attr]
                return moment
            self._armed = None
            self.report.unreached[moment] += 1
            moment = "random"
        if agent.alive():
            agent.kill()
        return moment

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Report:
        """Run the feeds, kill the agent ``kills`` times, drain, and compare the ledgers."""
        began = time.monotonic()
        config = self._configure()
        agent = self._start(config)
        self._up(agent)
        feeds: list[Feed] = [
            CsvFeed(self.workdir / "inbox", self.ledger, self.seed),
            JournalFeed(self.workdir / "pos" / "journal.log", self.ledger, self.seed + 1),
            PushFeed(self.api_url, self.ledger, self.seed + 2),
            ShopFeed(self.shop, self.ledger, self.seed + 3),
        ]
        csv_feed = feeds[0]
        assert isinstance(csv_feed, CsvFeed)
        for feed in feeds:
            feed.start()
        try:
            for number in range(self.kills):
                moment = MOMENTS[number % len(MOMENTS)]
                serial = None
                if moment != "startup" and self._up(agent) and self._tap_in_sync(agent):
                    serial = SerialFeed(self.pos, self.ledger, self.seed + 10 + number, self._serial_next)
                    serial.start()
                used = self._kill_at(moment, agent, csv_feed)
                self.report.kills[used] += 1
                if serial is not None:
                    serial.finish()
                    self._serial_next += serial.count + 1
                    _, cut = serial.settle()
                    self.report.receipts_cut += cut
                else:
                    self.pos.drop_unread()
                self.log(f"kill {number + 1}/{self.kills}: {used}")
                time.sleep(self.rng.choice((0.0, 0.1, 0.5)))
                agent = self._start(config)
            self._up(agent, timeout=60)
            for feed in feeds:
                feed.finish()
                if feed.error is not None:
                    raise RuntimeError(f"{feed.name} failed") from feed.error
            self._drain(config, agent)
        finally:
            for feed in feeds:
                feed.stop_event.set()
            if self._agent is not None and self._agent.alive():
                self._agent.kill()
            self.shop.stop()
            self.sandbox.stop()
            self.pos.close()
        self.report.seconds = time.monotonic() - began
        return self.report

    def _drain(self, config: Path, agent: AgentProcess) -> None:
        want = set(self.ledger.must)

        def all_there() -> bool:
            seen = {row["event_id"] for row in self.sandbox.ledger.ledger_rows(0, 10_000_000)}
            return want <= seen or not agent.alive()

        wait_for(all_there, timeout=180, interval=1.0, what=f"{len(want)} lines at the WMS")
        assert agent.alive(), agent.output()[-3000:]
        time.sleep(3.0)  # let anything that should not be there arrive too
        status = httpx.get(self.api_url + "/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"}).json()
        self.report.open_exceptions = int(status.get("exceptions_open", 0))
        listing = httpx.get(self.api_url + "/api/v1/exceptions", headers={"Authorization": f"Bearer {API_TOKEN}"})
        self.report.exceptions = [f"{e['code']} ({e['source']}): {e['message']}" for e in listing.json()]
        self.report.pushes = self.sandbox.state.counters["pushes"]
        self.report.stock_mismatches = self._stock_view_settles()
        agent.stop()
        self.compare(self.sandbox.ledger.ledger_rows(0, 10_000_000))

    def _stock_view_settles(self, timeout: float = 30) -> list[str]:
        """Once quiet, the store's stock view must equal the WMS's stock (snapshots pulled across kills)."""
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        wms = {r["sku"]: Decimal(r["on_hand"]) for r in self.sandbox.ledger.all_stock() if r["location"] == STORE}
        deadline = time.monotonic() + timeout
        while True:
            httpx.post(self.api_url + "/api/v1/stock/refresh", headers=headers, timeout=30)
            view = httpx.get(self.api_url + "/api/v1/stock", params={"limit": 100_000}, headers=headers).json()
            local = {r["sku"]: Decimal(str(r["effective_on_hand"])) for r in view if r["location"] == STORE}
            diff = [f"{sku}: view {local.get(sku)}, WMS {qty}" for sku, qty in wms.items() if local.get(sku) != qty]
            if not diff or time.monotonic() > deadline:
                return diff
            time.sleep(1)

    def compare(self, rows: list[dict[str, Any]]) -> None:
        """Compare the WMS ledger with the POS-side ledger, line by line."""
        report = self.report
        seen = Counter(row["event_id"] for row in rows)
        report.handed_over = len(self.ledger.must)
        report.applied = len(rows)
        report.twice = [eid for eid, n in seen.items() if n > 1]
        maybe = {eid: line for receipt in self.ledger.maybe for eid, line in receipt.items()}
        report.lost = [eid for eid in self.ledger.must if eid not in seen]
        for row in rows:
            eid = row["event_id"]
            line = self.ledger.must.get(eid) or maybe.get(eid)
            if line is None:
                report.foreign.append(eid)
            elif (row["sku"], Decimal(row["delta"])) != line:
                report.wrong.append(f"{eid}: WMS {row['sku']} {row['delta']}, POS {line[0]} {line[1]}")
        expected: dict[tuple[str, str], Decimal] = {}
        for row in rows:
            key = (row["sku"], row["stock_location"])
            expected[key] = expected.get(key, Decimal(0)) + Decimal(row["delta"])
        for level in self.sandbox.ledger.all_stock():
            key = (level["sku"], level["location"])
            want = Decimal(level["opening"]) + expected.pop(key, Decimal(0))
            if Decimal(level["on_hand"]) != want:
                report.stock_not_ledger.append(f"{key}: WMS on hand {level['on_hand']}, opening + lines {want}")
        report.stock_not_ledger += [f"{key}: lines applied to a location with no stock row" for key in expected]
        for receipt in self.ledger.maybe:
            got = sum(1 for eid in receipt if eid in seen and eid not in self.ledger.must)
            if got not in (0, len(receipt)):
                report.partial_receipts += 1
