"""Client for Tryton's stock module over its JSON-RPC API (``wms.kind = "tryton"``).

Every movement becomes one Tryton shipment whose ``reference`` is the movement's ``event_id``:
a sale a customer shipment (store storage -> customer location), a return a customer return
shipment (customer -> store storage, or the damaged / hold location), a transfer an internal
shipment between the store's warehouse and the counterpart warehouse (through Tryton's transit
location when it has one), an adjustment an internal shipment from or to lost-and-found. The
shipment and its move are created in one Tryton transaction, then pushed through Tryton's own
workflow to ``done``, which is when stock quantities change.

Invariants:
- Never applied twice. Before creating anything, the batch's event ids are looked up by reference
  (one search per shipment type in the batch, never one per event). An event whose shipment is
  ``done`` answers ``duplicate``; one whose shipment exists but is not done (a crash or timeout
  between workflow steps) is completed, not created again. When several shipments carry the same
  reference (a lookup raced a create that Tryton had not committed yet), the one furthest along the
  workflow, then the oldest, is the only one possync ever advances; the others never leave draft, so
  they move no stock. See docs/wms/tryton.md for the residual risk.
- Stock changes only inside Tryton's ``do`` / ``receive`` / ``ship`` / ``pick`` transitions of the
  chosen shipment; a Tryton transition is idempotent (a shipment already past it is skipped), so a
  repeated call after a lost answer changes nothing.
- ``push`` never raises for what Tryton or the network does: a refused operation rejects only the
  event it concerns (found by bisecting the group), with Tryton's words; anything transient retries
  the events not yet known to be done; refused credentials report ``auth_failed``.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import httpx
from pydantic import Field

from agent.domain import (
    Disposition,
    EventResult,
    ItemRecord,
    Kind,
    Movement,
    Outcome,
    PushReport,
    Snapshot,
    StockLevel,
)
from wms_client._common import LedgerOrder, ProductWmsSettings, http_client, retry_all
from wms_client._tryton_rpc import RpcAuth, RpcRefused, RpcTransient, TrytonRpc
from wms_client.base import SecretLookup, SecretRef, WmsAuthError, WmsUnavailable, register

OUT = "stock.shipment.out"
RETURN = "stock.shipment.out.return"
INTERNAL = "stock.shipment.internal"
MAX_ROUNDS = 8
PAGE = 1000

# How far along its workflow a shipment is; the furthest one is the one possync advances.
RANK = {"request": 0, "draft": 1, "waiting": 2, "assigned": 3, "received": 3, "picked": 4, "packed": 5}
RANK |= {"shipped": 6, "done": 7}
READ_FIELDS = {
    OUT: ["reference", "state", "number", "warehouse_storage", "warehouse_output"],
    RETURN: ["reference", "state", "number"],
    INTERNAL: ["reference", "state", "number", "internal_transit_location"],
}
WHAT = {OUT: "customer shipment", RETURN: "customer return shipment", INTERNAL: "internal shipment"}

T = TypeVar("T")


class TrytonWmsSettings(ProductWmsSettings):
    """``[wms]`` for Tryton (see docs/wms/tryton.md)."""

    kind: Literal["tryton"] = "tryton"
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: SecretRef
    warehouse: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    damaged_location: str | None = None
    hold_location: str | None = None
    lost_found_location: str | None = None
    warehouses: dict[str, str] = Field(default_factory=dict)
    unit_codes: dict[str, str] = Field(default_factory=lambda: {"u": "EA"})
    case_attribute: str | None = None


@dataclass(frozen=True, slots=True)
class _Shipment:
    model: str
    id: int
    reference: str
    state: str
    number: str
    two_step: bool = False  # customer shipment with a separate output location (pick, then pack)
    transit: bool = False  # internal shipment through a transit location (pack, ship, then done)

    @property
    def rank(self) -> tuple[int, int]:
        return (RANK.get(self.state, -1), -self.id)

    def label(self) -> str:
        return f"{WHAT[self.model]} {self.number or f'#{self.id}'}"


@dataclass(slots=True)
class _Site:
    """What possync needs to know about the Tryton side; read once, then on demand."""

    company: int
    currency: int
    warehouse: int
    currencies: dict[str, int]
    storage: int
    input: int
    output: int
    lost_found: int
    customer: int
    customer_address: int
    customer_location: int
    damaged: int | None
    hold: int | None
    warehouses: dict[str, int] = field(default_factory=dict)  # counterpart code -> storage location


@dataclass(frozen=True, slots=True)
class _Product:
    id: int
    uom: int
    rounding: Decimal
    active: bool


class _Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TrytonWmsClient:
    """Tryton's stock module as a WMS: shipments per movement, looked up by ``event_id`` first."""

    def __init__(
        self,
        settings: TrytonWmsSettings,
        store_id: str,
        secrets: SecretLookup,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Build the client; the password is read now and at every login."""
        self.settings = settings
        self.store_id = store_id
        self._secrets = secrets
        self._password = secrets(settings.password)
        self._http = http_client(settings, transport)
        self.rpc = TrytonRpc(self._http, settings.database, settings.user, lambda: self._password)
        self._site: _Site | None = None
        self._order = LedgerOrder()

    # -- delivery ----------------------------------------------------------------------------

    def push(self, batch: Sequence[Movement]) -> PushReport:
        """Apply the batch, never during a snapshot read; acks carry a position (see ``LedgerOrder``)."""
        with self._order.exclusive():
            return self._order.stamp(self._push_batch(batch))

    def _push_batch(self, batch: Sequence[Movement]) -> PushReport:
        """Apply each movement once as a Tryton shipment; every event ends accepted/duplicate/rejected/retry."""
        if not batch:
            return PushReport(results=[])
        started = time.monotonic()
        done: dict[str, EventResult] = {}
        try:
            site = self._site_info()
            self._push(site, batch, done)
        except RpcAuth as exc:
            return PushReport(results=[], auth_failed=True, error=str(exc), latency_s=time.monotonic() - started)
        except RpcTransient as exc:
            return retry_all(
                batch,
                str(exc),
                retry_after=exc.retry_after,
                http_status=exc.status,
                latency=time.monotonic() - started,
                done=list(done.values()),
            )
        except _SetupProblem as exc:
            return retry_all(batch, str(exc), latency=time.monotonic() - started)
        return PushReport(results=[done[m.event_id] for m in batch], latency_s=time.monotonic() - started)

    def _push(self, site: _Site, batch: Sequence[Movement], results: dict[str, EventResult]) -> None:
        by_model: dict[str, list[Movement]] = defaultdict(list)
        for movement in batch:
            by_model[_model_for(movement.kind)].append(movement)
        found = self._lookup({model: [m.event_id for m in ms] for model, ms in by_model.items()})
        chosen: dict[str, _Shipment] = {}
        to_create: dict[str, list[tuple[Movement, dict[str, Any]]]] = defaultdict(list)
        missing = [m for m in batch if m.event_id not in found]
        products = self._products({m.sku for m in missing if m.sku})
        self._resolve_counterparts(site, missing)
        for movement in batch:
            candidates = found.get(movement.event_id, [])
            live = [s for s in candidates if s.state != "cancelled"]
            if live:
                best = max(live, key=lambda s: s.rank)
                if best.state == "done":
                    results[movement.event_id] = EventResult(movement.event_id, Outcome.DUPLICATE)
                else:
                    chosen[movement.event_id] = best
            elif candidates:
                results[movement.event_id] = _rejected(
                    movement,
                    "CANCELLED_IN_WMS",
                    f"Tryton already has {candidates[0].label()} for this movement, and it was cancelled "
                    "there; possync will not apply it again. Re-create it in Tryton or resolve this exception.",
                )
            else:
                try:
                    model, values = self._shipment_values(site, products, movement)
                except _Rejected as exc:
                    results[movement.event_id] = _rejected(movement, exc.code, exc.message)
                else:
                    to_create[model].append((movement, values))
        for model, items in to_create.items():
            failures = _isolate(items, functools.partial(self._create, model))
            for (movement, _), message in failures:
                results[movement.event_id] = _rejected(
                    movement, "WMS_REFUSED", f"Tryton refused to create the {WHAT[model]}: {message}"
                )
        created = {
            model: [m.event_id for m, _ in items if m.event_id not in results] for model, items in to_create.items()
        }
        for event_id, candidates in self._lookup(created).items():
            live = [s for s in candidates if s.state != "cancelled"]
            if live:
                chosen[event_id] = max(live, key=lambda s: s.rank)
        for movement in batch:
            if movement.event_id not in results and movement.event_id not in chosen:
                results[movement.event_id] = EventResult(
                    movement.event_id, Outcome.RETRY, "NOT_FOUND", "the shipment just created was not found in Tryton"
                )
        self._complete(chosen, results, {m.event_id: m for m in batch})

    def _create(self, model: str, group: list[tuple[Movement, dict[str, Any]]]) -> None:
        self.rpc.model(model, "create", [values for _, values in group])

    def _press(self, model: str, button: str, group: list[tuple[str, _Shipment]]) -> None:
        self.rpc.model(model, button, [shipment.id for _, shipment in group])

    def _complete(
        self, chosen: dict[str, _Shipment], results: dict[str, EventResult], movements: dict[str, Movement]
    ) -> None:
        """Advance every chosen shipment through Tryton's workflow until it is done."""
        pending = dict(chosen)
        for _ in range(MAX_ROUNDS):
            for event_id in [e for e, s in pending.items() if s.state == "done"]:
                results[event_id] = EventResult(event_id, Outcome.ACCEPTED)
                del pending[event_id]
            if not pending:
                return
            steps: dict[tuple[str, str], list[tuple[str, _Shipment]]] = defaultdict(list)
            for event_id, shipment in pending.items():
                steps[(shipment.model, _next_button(shipment))].append((event_id, shipment))
            for (model, button), items in steps.items():
                failures = _isolate(items, functools.partial(self._press, model, button))
                for (event_id, shipment), message in failures:
                    results[event_id] = _rejected(
                        movements[event_id],
                        "WMS_REFUSED",
                        f"Tryton refused to {button.replace('_', ' ')} {shipment.label()} for this movement: "
                        f"{message.rstrip('.')}. Fix it in Tryton, then retry this exception; possync continues "
                        "that shipment and never creates a second one.",
                    )
                    del pending[event_id]
            before = dict(pending)
            pending = self._refresh(pending)
            for event_id, shipment in list(pending.items()):
                if shipment.state == before[event_id].state:
                    results[event_id] = EventResult(
                        event_id,
                        Outcome.RETRY,
                        "NOT_ADVANCED",
                        f"{shipment.label()} stayed {shipment.state} in Tryton; trying again later",
                    )
                    del pending[event_id]
        for event_id, shipment in pending.items():
            results[event_id] = EventResult(
                event_id, Outcome.RETRY, "NOT_DONE", f"{shipment.label()} is still {shipment.state} in Tryton"
            )

    def _lookup(self, ids_by_model: dict[str, list[str]]) -> dict[str, list[_Shipment]]:
        """Every shipment whose reference is one of the ids: one search per shipment type."""
        found: dict[str, list[_Shipment]] = defaultdict(list)
        for model, ids in ids_by_model.items():
            if not ids:
                continue
            rows = self.rpc.model(model, "search_read", [("reference", "in", ids)], 0, None, None, READ_FIELDS[model])
            for row in rows:
                shipment = _shipment(model, row)
                found[shipment.reference].append(shipment)
        return found

    def _refresh(self, pending: dict[str, _Shipment]) -> dict[str, _Shipment]:
        by_model: dict[str, list[int]] = defaultdict(list)
        for shipment in pending.values():
            by_model[shipment.model].append(shipment.id)
        fresh: dict[tuple[str, int], _Shipment] = {}
        for model, ids in by_model.items():
            for row in self.rpc.model(model, "read", ids, READ_FIELDS[model]):
                fresh[(model, int(row["id"]))] = _shipment(model, row)
        return {e: fresh.get((s.model, s.id), s) for e, s in pending.items()}

    def _shipment_values(
        self, site: _Site, products: dict[str, _Product], movement: Movement
    ) -> tuple[str, dict[str, Any]]:
        """Return the shipment (with its one move) that applies ``movement``; raise ``_Rejected`` if none can."""
        product = products.get(movement.sku or "")
        if product is None:
            raise _Rejected("UNKNOWN_SKU", f"Tryton has no product with code {movement.sku!r}")
        if not product.active:
            raise _Rejected("ITEM_INACTIVE", f"product {movement.sku} is inactive in Tryton")
        quantity = abs(movement.quantity)
        if quantity == 0:
            raise _Rejected("BAD_QUANTITY", "the quantity is zero")
        if product.rounding > 0 and quantity % product.rounding != 0:
            raise _Rejected(
                "BAD_QUANTITY",
                f"quantity {quantity} of {movement.sku} is not a multiple of {product.rounding}, the smallest "
                "amount Tryton records for this product's unit",
            )
        day = movement.business_day
        move: dict[str, Any] = {
            "product": product.id,
            "unit": product.uom,
            "quantity": float(quantity),
            "company": site.company,
            "planned_date": day,
            "effective_date": day,
        }
        head: dict[str, Any] = {
            "company": site.company,
            "reference": movement.event_id,
            "planned_date": day,
            "effective_date": day,
        }
        priced = {
            "unit_price": movement.unit_price if movement.unit_price is not None else Decimal(0),
            "currency": site.currencies.get((movement.currency or "").upper(), site.currency),
        }
        if movement.kind is Kind.SALE:
            move |= {"from_location": site.output, "to_location": site.customer_location, **priced}
            head |= {
                "customer": site.customer,
                "delivery_address": site.customer_address,
                "warehouse": site.warehouse,
                "warehouse_storage": site.storage,
                "warehouse_output": site.output,
                "outgoing_moves": [("create", [move])],
            }
            return OUT, head
        if movement.kind is Kind.RETURN:
            target = site.storage
            if movement.disposition is Disposition.DAMAGED:
                target = _required(site.damaged, "damaged", "wms.damaged_location")
            elif movement.disposition is Disposition.HOLD:
                target = _required(site.hold or site.damaged, "held", "wms.hold_location")
            move |= {"from_location": site.customer_location, "to_location": site.input, **priced}
            head |= {
                "customer": site.customer,
                "warehouse": site.warehouse,
                "warehouse_storage": target,
                "warehouse_input": site.input,
                "incoming_moves": [("create", [move])],
            }
            return RETURN, head
        if movement.kind in (Kind.TRANSFER_OUT, Kind.TRANSFER_IN):
            if not movement.counterpart_location:
                raise _Rejected("MISSING_COUNTERPART", "a transfer needs the location it goes to or comes from")
            other = site.warehouses.get(movement.counterpart_location)
            if other is None:
                code = self.settings.warehouses.get(movement.counterpart_location, movement.counterpart_location)
                raise _Rejected(
                    "UNKNOWN_LOCATION",
                    f"Tryton has no warehouse with code {code!r} for transfer location "
                    f"{movement.counterpart_location!r} (map it in wms.warehouses)",
                )
            src, dst = (site.storage, other) if movement.kind is Kind.TRANSFER_OUT else (other, site.storage)
        else:  # adjustment: the sign is the direction
            lost = site.lost_found
            src, dst = (lost, site.storage) if movement.quantity > 0 else (site.storage, lost)
        move |= {"from_location": src, "to_location": dst}
        head |= {
            "from_location": src,
            "to_location": dst,
            "planned_start_date": day,
            "effective_start_date": day,
            "moves": [("create", [move])],
        }
        return INTERNAL, head

    def _products(self, skus: set[str]) -> dict[str, _Product]:
        if not skus:
            return {}
        rows = self.rpc.call(
            "model.product.product.search_read",
            [("code", "in", sorted(skus))],
            0,
            None,
            None,
            ["code", "active", "default_uom", "default_uom.rounding"],
            {**self.rpc.context, "active_test": False},
        )
        products: dict[str, _Product] = {}
        for row in rows:
            uom = row.get("default_uom.") or {}
            products[str(row["code"])] = _Product(
                id=int(row["id"]),
                uom=int(row["default_uom"]),
                rounding=_decimal(uom.get("rounding", 0)),
                active=bool(row.get("active", True)),
            )
        return products

    # -- what the Tryton side looks like -------------------------------------------------------

    def _site_info(self) -> _Site:
        if self._site is not None:
            return self._site
        s = self.settings
        context = self.rpc.context
        company = context.get("company")
        if not company:
            raise _SetupProblem(f"the Tryton user {s.user!r} has no current company; set one in the user's preferences")
        (company_row,) = self.rpc.model("company.company", "read", [company], ["currency"])
        warehouse = self._one_location(s.warehouse, "warehouse", "wms.warehouse", kind="warehouse") or 0
        (wh,) = self.rpc.model(
            "stock.location",
            "read",
            [warehouse],
            ["storage_location", "input_location", "output_location", "lost_found_location"],
        )
        lost_found = self._one_location(s.lost_found_location, "lost and found", "wms.lost_found_location")
        if lost_found is None:
            lost_found = wh.get("lost_found_location") or self._first_location_of_type("lost_found")
        customers = self.rpc.model(
            "party.party", "search_read", [("code", "=", s.customer)], 0, 1, None, ["addresses", "customer_location"]
        )
        if not customers:
            raise _SetupProblem(f"Tryton has no party with code {s.customer!r} (wms.customer)")
        customer = customers[0]
        if not customer.get("addresses"):
            raise _SetupProblem(f"the Tryton party {s.customer!r} (wms.customer) needs an address")
        customer_location = customer.get("customer_location") or self._first_location_of_type("customer")
        currencies = {
            str(row["code"]).upper(): int(row["id"])
            for row in self.rpc.model("currency.currency", "search_read", [], 0, None, None, ["code"])
        }
        self._site = _Site(
            company=int(company),
            warehouse=warehouse,
            currency=int(company_row["currency"]),
            currencies=currencies,
            storage=int(wh["storage_location"]),
            input=int(wh["input_location"]),
            output=int(wh["output_location"]),
            lost_found=int(lost_found),
            customer=int(customer["id"]),
            customer_address=int(customer["addresses"][0]),
            customer_location=int(customer_location),
            damaged=self._one_location(s.damaged_location, "damaged-returns", "wms.damaged_location"),
            hold=self._one_location(s.hold_location, "held-returns", "wms.hold_location"),
        )
        return self._site

    def _resolve_counterparts(self, site: _Site, movements: Iterable[Movement]) -> None:
        wanted = {
            m.counterpart_location
            for m in movements
            if m.counterpart_location and m.counterpart_location not in site.warehouses
        }
        if not wanted:
            return
        codes = {self.settings.warehouses.get(c, c): c for c in wanted}
        rows = self.rpc.model(
            "stock.location",
            "search_read",
            [("code", "in", sorted(codes)), ("type", "=", "warehouse")],
            0,
            None,
            None,
            ["code", "storage_location"],
        )
        for row in rows:
            site.warehouses[codes[str(row["code"])]] = int(row["storage_location"])

    def _one_location(self, code: str | None, what: str, key: str, kind: str | None = None) -> int | None:
        if code is None:
            return None
        domain: list[Any] = [("code", "=", code)]
        if kind:
            domain.append(("type", "=", kind))
        ids = self.rpc.model("stock.location", "search", domain, 0, 2, None)
        if len(ids) != 1:
            raise _SetupProblem(
                f"Tryton has {'no' if not ids else 'more than one'} {what} location with code {code!r} ({key})"
            )
        return int(ids[0])

    def _first_location_of_type(self, kind: str) -> int:
        ids = self.rpc.model("stock.location", "search", [("type", "=", kind)], 0, 1, None)
        if not ids:
            raise _SetupProblem(f"Tryton has no location of type {kind!r}")
        return int(ids[0])

    # -- reads -------------------------------------------------------------------------------

    def stock_snapshot(self) -> Snapshot:
        """Read the snapshot while no push runs; its version is a ``LedgerOrder`` tick taken first."""
        with self._order.exclusive():
            return self._read_snapshot(self._order.tick())

    def _read_snapshot(self, version: int) -> Snapshot:
        """On-hand stock of every product at the store's storage, damaged and hold locations."""
        started = dt.datetime.now(dt.UTC)
        try:
            site = self._site_info()
            places = {self.store_id: site.storage}
            if site.damaged is not None:
                places[f"{self.store_id}:damaged"] = site.damaged
            if site.hold is not None:
                places[f"{self.store_id}:hold"] = site.hold
            levels: list[StockLevel] = []
            for name, location in places.items():
                context = {**self.rpc.context, "locations": [location], "with_childs": True}
                for row in self._pages("product.product", [("type", "=", "goods")], ["code", "quantity"], context):
                    on_hand = _decimal(row.get("quantity") or 0)
                    if row.get("code") and (on_hand != 0 or location == site.storage):
                        levels.append(StockLevel(sku=str(row["code"]), location=name, on_hand=on_hand))
        except RpcAuth as exc:
            raise WmsAuthError(str(exc)) from exc
        except (RpcTransient, RpcRefused, _SetupProblem) as exc:
            raise WmsUnavailable(f"Tryton stock snapshot failed: {exc}") from exc
        return Snapshot(store_id=self.store_id, version=version, as_of=started, levels=levels)

    def item_master(self) -> list[ItemRecord]:
        """Products (variant code = SKU) with their identifiers as barcodes and aliases."""
        fields = ["code", "name", "active", "default_uom.symbol", "identifiers"]
        if self.settings.case_attribute:
            fields.append("attributes")
        try:
            context = {**self.rpc.context, "active_test": False}
            rows = [r for r in self._pages("product.product", [], fields, context) if r.get("code")]
            identifier_ids = [i for r in rows for i in r.get("identifiers") or ()]
            codes: dict[int, str] = {}
            for start in range(0, len(identifier_ids), PAGE):
                chunk = identifier_ids[start : start + PAGE]
                for row in self.rpc.model("product.identifier", "read", chunk, ["code"]):
                    codes[int(row["id"])] = str(row["code"])
        except RpcAuth as exc:
            raise WmsAuthError(str(exc)) from exc
        except (RpcTransient, RpcRefused, _SetupProblem) as exc:
            raise WmsUnavailable(f"Tryton item master failed: {exc}") from exc
        items = []
        for row in rows:
            symbol = str((row.get("default_uom.") or {}).get("symbol") or "u")
            base = self.settings.unit_codes.get(symbol, symbol.upper())
            units = {base: Decimal(1)}
            case = (row.get("attributes") or {}).get(self.settings.case_attribute or "")
            if case is not None:
                try:
                    if Decimal(str(case)) > 0:
                        units["CS"] = Decimal(str(case))
                except InvalidOperation:
                    pass
            idents = [codes[i] for i in row.get("identifiers") or () if i in codes]
            items.append(
                ItemRecord(
                    sku=str(row["code"]),
                    description=str(row.get("name") or ""),
                    base_unit=base,
                    units=units,
                    barcodes=tuple(c for c in idents if c.isdigit()),
                    aliases=tuple(c for c in idents if not c.isdigit()),
                    status="active" if row.get("active", True) else "inactive",
                )
            )
        return items

    def _pages(self, model: str, domain: list[Any], fields: list[str], context: dict[str, Any]) -> list[Any]:
        rows: list[Any] = []
        while True:
            page = self.rpc.call(
                f"model.{model}.search_read", domain, len(rows), PAGE, [["id", "ASC"]], fields, context
            )
            rows.extend(page)
            if len(page) < PAGE:
                return rows

    def ping(self) -> float:
        """Log in (again) and read the user's preferences; return the round trip in seconds."""
        started = time.monotonic()
        try:
            self.rpc.login()
        except RpcAuth as exc:
            raise WmsAuthError(str(exc)) from exc
        except (RpcTransient, RpcRefused) as exc:
            raise WmsUnavailable(str(exc)) from exc
        return time.monotonic() - started

    def refresh_credentials(self) -> bool:
        """Re-read the password; a changed one forces a new login."""
        password = self._secrets(self.settings.password)
        changed = password != self._password
        self._password = password
        if changed:
            self.rpc.logout()
        return changed

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class _SetupProblem(RuntimeError):
    """Tryton is reachable but not set up as the config says (a missing warehouse, party, location)."""


def _model_for(kind: Kind) -> str:
    return {Kind.SALE: OUT, Kind.RETURN: RETURN}.get(kind, INTERNAL)


def _shipment(model: str, row: dict[str, Any]) -> _Shipment:
    return _Shipment(
        model=model,
        id=int(row["id"]),
        reference=str(row.get("reference") or ""),
        state=str(row.get("state") or ""),
        number=str(row.get("number") or ""),
        two_step=model == OUT and row.get("warehouse_storage") != row.get("warehouse_output"),
        transit=model == INTERNAL and bool(row.get("internal_transit_location")),
    )


def _next_button(shipment: _Shipment) -> str:
    """Return the Tryton button that moves a shipment one step closer to done."""
    state = shipment.state
    if shipment.model == RETURN:
        return {"draft": "receive"}.get(state, "do")
    if state in ("draft", "request"):
        return "wait"
    if state == "waiting":
        return "assign_force"
    if shipment.model == OUT:
        if state == "assigned":
            return "pick" if shipment.two_step else "pack"
        return {"picked": "pack"}.get(state, "do")
    if state == "assigned":
        return "pack" if shipment.transit else "do"
    return {"packed": "ship"}.get(state, "do")


def _isolate(items: list[T], call: Callable[[list[T]], object]) -> list[tuple[T, str]]:
    """Run ``call`` on all items; if Tryton refuses, bisect to find the items it refuses and why."""
    try:
        call(items)
    except RpcRefused as exc:
        if len(items) == 1:
            return [(items[0], str(exc))]
        middle = len(items) // 2
        return _isolate(items[:middle], call) + _isolate(items[middle:], call)
    return []


def _rejected(movement: Movement, code: str, message: str) -> EventResult:
    return EventResult(movement.event_id, Outcome.REJECTED, code, message)


def _required(location: int | None, what: str, key: str) -> int:
    if location is None:
        raise _Rejected("UNKNOWN_LOCATION", f"{what} returns need a Tryton location; set {key}")
    return location


def _decimal(value: object) -> Decimal:
    """Read a Tryton number (a float for quantities) as a Decimal without exponent notation."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def build(settings: TrytonWmsSettings, store_id: str, secrets: SecretLookup) -> TrytonWmsClient:
    """Build a Tryton client (the factory registered for ``wms.kind = "tryton"``)."""
    return TrytonWmsClient(settings, store_id, secrets)


register("tryton", TrytonWmsSettings, build)
