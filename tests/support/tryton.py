"""A real Tryton server for the tests: trytond from PyPI, SQLite database, JSON-RPC on 127.0.0.1.

``build_template`` creates a database once per test session (``trytond-admin --all`` with the stock
and product_attribute modules), then sets it up over JSON-RPC the way an administrator would for a
store: a company, the store's warehouse S001 (one-step: input, output and storage are the same
location) with a damaged-returns location, the distribution centre DC01, a walk-in customer party,
products from the sample items (code = SKU, identifiers = barcodes and aliases, attribute
``case_qty``), opening stock, and a ``possync`` user that is only in the Stock group. Each test then
runs its own ``TrytonServer`` on a copy of that file.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.support.helpers import ITEMS_CSV
from wms_client._tryton_rpc import TrytonRpc

DB = "possync"
ADMIN_PASSWORD = "admin-secret"
POSSYNC_USER = "possync"
POSSYNC_PASSWORD = "possync-secret-1"
MODULES = ("stock", "product_attribute")
OPENING_DAY = dt.date(2026, 11, 1)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def free_port() -> int:
    """Return a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_trytond_conf(folder: Path, port: int) -> Path:
    """Write a trytond config serving SQLite databases from ``folder``."""
    conf = folder / "trytond.conf"
    conf.write_text(
        f"[database]\nuri = sqlite://\npath = {folder}\n"
        f"[web]\nlisten = 127.0.0.1:{port}\n"
        "[session]\ntimeout = 3600\n"
        "[password]\nlength = 8\n",
        encoding="utf-8",
    )
    return conf


class TrytonServer:
    """``trytond`` as a subprocess on a copy of the template database."""

    def __init__(self, folder: Path, template: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, folder / f"{DB}.sqlite")
        self.port = free_port()
        self.conf = write_trytond_conf(folder, self.port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "trytond.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> TrytonServer:
        handle = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "TRYTOND_LOGGING_LEVEL": "30"}
        self.proc = subprocess.Popen(
            [_bin("trytond"), "-c", str(self.conf), "-d", DB],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        handle.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = httpx.post(
                    f"{self.url}/rpc/", json={"id": 0, "method": "common.server.version", "params": []}, timeout=2
                )
                if answer.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"trytond did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a suspended server would never see the SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def suspend(self) -> None:
        """SIGSTOP: the socket stays open but nothing answers (a hung server)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def rpc(self, user: str = "admin", password: str = ADMIN_PASSWORD) -> TrytonAdmin:
        return TrytonAdmin(self.url, user, password)


class TrytonAdmin:
    """JSON-RPC as a Tryton user, for setting Tryton up and for checking what it holds."""

    def __init__(self, url: str, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.rpc = TrytonRpc(self.http, DB, user, lambda: password)

    def __call__(self, model: str, method: str, *args: Any) -> Any:
        return self.rpc.model(model, method, *args)

    def close(self) -> None:
        self.http.close()

    def location(self, code: str) -> int:
        (found,) = self("stock.location", "search", [("code", "=", code)], 0, None, None)
        return int(found)

    def storage_of(self, warehouse_code: str) -> int:
        (row,) = self(
            "stock.location", "search_read", [("code", "=", warehouse_code)], 0, 1, None, ["storage_location"]
        )
        return int(row["storage_location"])

    def stock(self, location: int) -> dict[str, Decimal]:
        """On-hand quantity per product code at a location (and its children)."""
        context = {**self.rpc.context, "locations": [location], "with_childs": True}
        rows = self.rpc.call("model.product.product.search_read", [], 0, None, None, ["code", "quantity"], context)
        return {str(r["code"]): Decimal(str(r["quantity"])).normalize() for r in rows}

    def shipments_by_reference(self) -> dict[str, list[dict[str, Any]]]:
        """Every shipment possync could have made, grouped by reference (the event id)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for model in ("stock.shipment.out", "stock.shipment.out.return", "stock.shipment.internal"):
            for row in self(model, "search_read", [("reference", "!=", None)], 0, None, None, ["reference", "state"]):
                found.setdefault(str(row["reference"]), []).append({"model": model, **row})
        return found

    def done_moves_per_reference(self) -> dict[str, int]:
        """How many done stock moves each shipment reference has (one per event when nothing doubled)."""
        counts: dict[str, int] = {}
        for model in ("stock.shipment.out", "stock.shipment.out.return", "stock.shipment.internal"):
            rows = self(
                "stock.move",
                "search_read",
                [("shipment.reference", "!=", None, model), ("state", "=", "done")],
                0,
                None,
                None,
                ["shipment.reference", "to_location", "from_location"],
            )
            for row in rows:
                reference = str((row.get("shipment.") or {}).get("reference"))
                counts[reference] = counts.get(reference, 0) + 1
        return counts


def build_template(folder: Path) -> Path:
    """Create and set up the template database once; return the path of its SQLite file."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / f"{DB}.sqlite"
    database.touch()
    conf = write_trytond_conf(folder, free_port())
    secret = folder / "admin-password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    subprocess.run(
        [
            _bin("trytond-admin"),
            "-c",
            str(conf),
            "-d",
            DB,
            "--all",
            "--activate-dependencies",
            "--email",
            "admin@example.com",
            "-u",
            *MODULES,
        ],
        env={**os.environ, "TRYTONPASSFILE": str(secret), "TRYTOND_LOGGING_LEVEL": "40"},
        check=True,
        capture_output=True,
        timeout=600,
    )
    staging = folder / "staging"
    server = TrytonServer(staging, database).start()
    try:
        admin = server.rpc()
        try:
            _set_up_store(admin)
        finally:
            admin.close()
    finally:
        server.stop()
    # trytond keeps SQLite in WAL mode: fold the log into the file so one file is the whole database.
    with closing(sqlite3.connect(staging / f"{DB}.sqlite")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    template = folder / "template.sqlite"
    shutil.copyfile(staging / f"{DB}.sqlite", template)
    return template


def _set_up_store(admin: TrytonAdmin) -> None:
    usd = admin("currency.currency", "create", [{"name": "US Dollar", "code": "USD", "symbol": "$", "digits": 2}])[0]
    owner = admin("party.party", "create", [{"name": "Trail Outfitters"}])[0]
    company = admin("company.company", "create", [{"party": owner, "currency": usd}])[0]
    admin("res.user", "write", [1], {"companies": [("add", [company])], "company": company})
    admin.rpc.login()  # the session context now carries the company

    for code in ("S001", "DC01"):
        storage = admin(
            "stock.location", "create", [{"name": f"{code} shelves", "code": f"{code}-STO", "type": "storage"}]
        )[0]
        admin(
            "stock.location",
            "create",
            [
                {
                    "name": code,
                    "code": code,
                    "type": "warehouse",
                    "input_location": storage,
                    "output_location": storage,
                    "storage_location": storage,
                }
            ],
        )
    store = admin.location("S001")
    admin(
        "stock.location", "create", [{"name": "S001 damaged", "code": "S001-DMG", "type": "storage", "parent": store}]
    )
    admin("party.party", "create", [{"name": "POS walk-in customer", "code": "POS", "addresses": [("create", [{}])]}])

    attribute = admin(
        "product.attribute", "create", [{"name": "case_qty", "string": "Units per case", "type_": "integer"}]
    )[0]
    attribute_set = admin(
        "product.attribute.set", "create", [{"name": "Retail", "attributes": [("add", [attribute])]}]
    )[0]
    unit = admin("product.uom", "search", [("symbol", "=", "u")], 0, 1, None)[0]
    with open(ITEMS_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    products: dict[str, int] = {}
    for row in rows:
        sku = row["sku"]
        if sku in products:
            continue
        identifiers = [{"code": code} for code in row["barcodes"].split("|") if code]
        template = admin(
            "product.template",
            "create",
            [
                {
                    "name": row["description"],
                    "type": "goods",
                    "default_uom": unit,
                    "attribute_set": attribute_set,
                    "products": [
                        (
                            "create",
                            [
                                {
                                    "suffix_code": sku,
                                    "identifiers": [("create", identifiers)],
                                    "attributes": {"case_qty": int(row["case_qty"] or 1)},
                                }
                            ],
                        )
                    ],
                }
            ],
        )[0]
        products[sku] = admin("product.product", "search", [("template", "=", template)], 0, 1, None)[0]
    lost_found = admin("stock.location", "search", [("type", "=", "lost_found")], 0, 1, None)[0]
    storage = {code: admin.storage_of(code) for code in ("S001", "DC01")}
    moves = [
        {
            "product": products[row["sku"]],
            "unit": unit,
            "quantity": float(row["on_hand"]),
            "from_location": lost_found,
            "to_location": storage[row["location"]],
            "company": company,
            "effective_date": OPENING_DAY,
        }
        for row in rows
    ]
    admin("stock.move", "do", admin("stock.move", "create", moves))

    # What docs/wms/tryton.md asks of the possync user: Stock, and Stock Force Assignment (the POS
    # has already sold the goods, so possync does not wait for Tryton to find them on the shelf).
    groups = admin("res.group", "search", [("name", "in", ["Stock", "Stock Force Assignment"])], 0, None, None)
    admin(
        "res.user",
        "create",
        [
            {
                "name": "possync agent",
                "login": POSSYNC_USER,
                "password": POSSYNC_PASSWORD,
                "groups": [("add", groups)],
                "companies": [("add", [company])],
                "company": company,
            }
        ],
    )


def tryton_wms_toml(server: TrytonServer, password_env: str = "POSSYNC_TRYTON_PASSWORD", **extra: str) -> str:
    """The ``[wms]`` table of a possync.toml that points at ``server``."""
    lines = [
        "[wms]",
        'kind = "tryton"',
        f'url = "{server.url}"',
        f'database = "{DB}"',
        f'user = "{POSSYNC_USER}"',
        f'password = "env:{password_env}"',
        'warehouse = "S001"',
        'customer = "POS"',
        'damaged_location = "S001-DMG"',
        'case_attribute = "case_qty"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def running(folder: Path, template: Path) -> Iterator[TrytonServer]:
    """A Tryton server on a fresh copy of the template, stopped afterwards."""
    server = TrytonServer(folder, template).start()
    try:
        yield server
    finally:
        server.stop()
