"""Client for InvenTree's REST API (``wms.kind = "inventree"``).

Parts are found by IPN (= SKU); the store is one stock location; stock per location is the sum of
the stock items there. Every movement is one InvenTree stock operation (``stock/remove``,
``stock/add`` or ``stock/transfer``), one request, one database transaction, whose ``notes`` carry
``possync:<business day>:<event_id>``; InvenTree copies the notes into the stock tracking entries.

Invariants:
- Never applied twice: before applying, the batch's events are looked up in the stock tracking
  history (one search per business day in the batch, paged), and an event found there answers
  ``duplicate``. The items possync takes stock from get ``delete_on_deplete = false`` first, so a
  depleted item (and the tracking entries that carry our marker) is never deleted.
- InvenTree stops a removal at zero and still answers 201: possync checks the quantity first and
  rejects the event with the shortfall in words instead.
- 429 (with Retry-After), 5xx including SQLite's "database is locked", timeouts and network errors
  mean retry; 401/403 mean the token is refused; another 4xx rejects only the event it concerns.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx
from pydantic import Field

from agent.domain import Disposition, EventResult, ItemRecord, Kind, Movement, Outcome, PushReport, Snapshot, StockLevel
from wms_client._common import LedgerOrder, ProductWmsSettings, describe, http_client, redirect_message, retry_all
from wms_client.base import SecretLookup, SecretRef, WmsAuthError, WmsUnavailable, register
from wms_client.outcomes import parse_retry_after

PAGE = 500
MARK = "possync:{day}:{event_id}"
MARK_RE = re.compile(r"possync:(\d{4}-\d{2}-\d{2}):([0-9a-fA-F-]{36})")


class InvenTreeWmsSettings(ProductWmsSettings):
    """``[wms]`` for InvenTree (see docs/wms/inventree.md)."""

    kind: Literal["inventree"] = "inventree"
    token: SecretRef
    location: str = Field(min_length=1)
    damaged_location: str | None = None
    hold_location: str | None = None
    locations: dict[str, str] = Field(default_factory=dict)
    unit_codes: dict[str, str] = Field(default_factory=lambda: {"": "EA", "pcs": "EA"})
    case_parameter: str | None = None


class _Transient(RuntimeError):
    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class _Auth(RuntimeError):
    pass


class _Refused(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvenTreeWmsClient:
    """InvenTree as a WMS: one stock operation per movement, marked with its ``event_id``."""

    def __init__(
        self,
        settings: InvenTreeWmsSettings,
        store_id: str,
        secrets: SecretLookup,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Build the client; the token is read now and again on ``refresh_credentials``."""
        self.settings = settings
        self.store_id = store_id
        self._secrets = secrets
        self._token = secrets(settings.token)
        self._http = http_client(settings, transport)
        self._locations: dict[str, int] = {}
        self._order = LedgerOrder()

    # -- delivery ----------------------------------------------------------------------------

    def push(self, batch: Sequence[Movement]) -> PushReport:
        """Apply the batch, never during a snapshot read; acks carry a position (see ``LedgerOrder``)."""
        with self._order.exclusive():
            return self._order.stamp(self._push_batch(batch))

    def _push_batch(self, batch: Sequence[Movement]) -> PushReport:
        """Apply each movement once; every event ends accepted, duplicate, rejected or retry."""
        if not batch:
            return PushReport(results=[])
        started = time.monotonic()
        results: dict[str, EventResult] = {}
        try:
            applied = self._applied({m.business_day for m in batch})
            parts = self._parts({m.sku for m in batch if m.sku and m.event_id not in applied})
            for movement in batch:
                if movement.event_id in applied:
                    results[movement.event_id] = EventResult(movement.event_id, Outcome.DUPLICATE)
                    continue
                try:
                    self._apply(movement, parts)
                except _Rejected as exc:
                    results[movement.event_id] = EventResult(movement.event_id, Outcome.REJECTED, exc.code, exc.message)
                except _Refused as exc:
                    results[movement.event_id] = EventResult(
                        movement.event_id, Outcome.REJECTED, f"HTTP_{exc.status}", f"InvenTree refused it: {exc}"
                    )
                else:
                    results[movement.event_id] = EventResult(movement.event_id, Outcome.ACCEPTED)
        except _Auth as exc:
            return PushReport(results=[], auth_failed=True, error=str(exc), latency_s=time.monotonic() - started)
        except _Transient as exc:
            return retry_all(
                batch,
                str(exc),
                retry_after=exc.retry_after,
                http_status=exc.status,
                latency=time.monotonic() - started,
                done=list(results.values()),
            )
        return PushReport(results=[results[m.event_id] for m in batch], latency_s=time.monotonic() - started)

    def _applied(self, days: set[dt.date]) -> set[str]:
        """Return the event ids whose marker is in the stock tracking history (one search per day)."""
        found: set[str] = set()
        for day in sorted(days):
            for entry in self._pages("/api/stock/track/", {"search": f"possync:{day.isoformat()}"}):
                found.update(m.group(2) for m in MARK_RE.finditer(str(entry.get("notes") or "")))
        return found

    def _apply(self, movement: Movement, parts: dict[str, dict[str, Any]]) -> None:
        part = parts.get(movement.sku or "")
        if part is None:
            raise _Rejected("UNKNOWN_SKU", f"InvenTree has no part with IPN {movement.sku!r}")
        if part.get("active") is False:
            raise _Rejected("ITEM_INACTIVE", f"part {movement.sku} is inactive in InvenTree")
        quantity = abs(movement.quantity)
        if quantity == 0:
            raise _Rejected("BAD_QUANTITY", "the quantity is zero")
        notes = MARK.format(day=movement.business_day.isoformat(), event_id=movement.event_id)
        notes += f" {movement.kind.value} {movement.pos_transaction_id}/{movement.line_no}"
        store = self._location(self.settings.location, "wms.location")
        pk = int(part["pk"])
        if movement.kind is Kind.SALE or (movement.kind is Kind.ADJUSTMENT and movement.quantity < 0):
            items = self._take(pk, store, quantity, movement.sku or "")
            self._post("/api/stock/remove/", {"items": items, "notes": notes})
        elif movement.kind is Kind.RETURN or movement.kind is Kind.ADJUSTMENT:
            target = store
            if movement.disposition is Disposition.DAMAGED:
                target = self._location(self.settings.damaged_location, "wms.damaged_location")
            elif movement.disposition is Disposition.HOLD:
                target = self._location(
                    self.settings.hold_location or self.settings.damaged_location, "wms.hold_location"
                )
            item = self._item_at(pk, target)
            self._post("/api/stock/add/", {"items": [{"pk": item, "quantity": str(quantity)}], "notes": notes})
        else:
            if not movement.counterpart_location:
                raise _Rejected("MISSING_COUNTERPART", "a transfer needs the location it goes to or comes from")
            name = self.settings.locations.get(movement.counterpart_location, movement.counterpart_location)
            other = self._location(name, f"wms.locations.{movement.counterpart_location}", unknown_rejects=True)
            src, dst = (store, other) if movement.kind is Kind.TRANSFER_OUT else (other, store)
            items = self._take(pk, src, quantity, movement.sku or "")
            self._post("/api/stock/transfer/", {"items": items, "location": dst, "notes": notes, "merge": True})

    def _take(self, part: int, location: int, quantity: Decimal, sku: str) -> list[dict[str, Any]]:
        """Return the items to remove ``quantity`` from, after checking there is enough (InvenTree stops at zero)."""
        rows = self._pages("/api/stock/", {"part": part, "location": location, "cascade": "false", "in_stock": "true"})
        available = sum((_dec(r.get("quantity")) for r in rows), Decimal(0))
        if available < quantity:
            raise _Rejected(
                "INSUFFICIENT_STOCK",
                f"InvenTree has {available} of {sku} at this location, less than the {quantity} to take; "
                "InvenTree would silently stop at zero, so nothing was taken. Count the stock in InvenTree, "
                "then retry this exception.",
            )
        plan: list[dict[str, Any]] = []
        left = quantity
        for row in sorted(rows, key=lambda r: -_dec(r.get("quantity"))):
            if left <= 0:
                break
            take = min(left, _dec(row.get("quantity")))
            if take <= 0:
                continue
            if row.get("delete_on_deplete", True):
                # A deleted item takes its tracking history (our duplicate marker) with it.
                self._request("PATCH", f"/api/stock/{int(row['pk'])}/", {"delete_on_deplete": False})
            plan.append({"pk": int(row["pk"]), "quantity": str(take)})
            left -= take
        return plan

    def _item_at(self, part: int, location: int) -> int:
        """Return a stock item of ``part`` at ``location`` to add to, created empty if there is none."""
        rows = self._pages("/api/stock/", {"part": part, "location": location, "cascade": "false"})
        if rows:
            return int(rows[0]["pk"])
        created = self._post(
            "/api/stock/", {"part": part, "location": location, "quantity": "0", "delete_on_deplete": False}
        )
        if isinstance(created, list):
            created = created[0]
        return int(created["pk"])

    def _parts(self, skus: set[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for sku in sorted(skus):
            for row in self._pages("/api/part/", {"IPN": sku}):
                if str(row.get("IPN")) == sku:
                    found[sku] = row
        return found

    def _location(self, name: str | None, key: str, *, unknown_rejects: bool = False) -> int:
        if name is None:
            raise _Rejected("UNKNOWN_LOCATION", f"no InvenTree location is configured; set {key}")
        if name not in self._locations:
            rows = self._pages("/api/stock/location/", {"name": name.rsplit("/", 1)[-1]})
            matches = [r for r in rows if name in (r.get("pathstring"), r.get("name"))]
            if len(matches) != 1:
                message = f"InvenTree has {len(matches) or 'no'} stock location(s) named {name!r} ({key})"
                if unknown_rejects:
                    raise _Rejected("UNKNOWN_LOCATION", message)
                raise _Transient(message)
            self._locations[name] = int(matches[0]["pk"])
        return self._locations[name]

    # -- reads -------------------------------------------------------------------------------

    def stock_snapshot(self) -> Snapshot:
        """Read the snapshot while no push runs; its version is a ``LedgerOrder`` tick taken first."""
        with self._order.exclusive():
            return self._read_snapshot(self._order.tick())

    def _read_snapshot(self, version: int) -> Snapshot:
        """Stock per SKU at the store's locations: the sum of the stock items there."""
        started = dt.datetime.now(dt.UTC)
        places = {self.store_id: self.settings.location}
        if self.settings.damaged_location:
            places[f"{self.store_id}:damaged"] = self.settings.damaged_location
        if self.settings.hold_location:
            places[f"{self.store_id}:hold"] = self.settings.hold_location
        levels: list[StockLevel] = []
        try:
            for name, location in places.items():
                totals: dict[str, Decimal] = defaultdict(Decimal)
                params = {"location": self._location(location, "wms.location"), "cascade": "false"}
                for row in self._pages("/api/stock/", {**params, "part_detail": "true"}):
                    ipn = (row.get("part_detail") or {}).get("IPN")
                    if ipn:
                        totals[str(ipn)] += _dec(row.get("quantity"))
                levels += [StockLevel(sku=s, location=name, on_hand=q) for s, q in sorted(totals.items())]
        except _Auth as exc:
            raise WmsAuthError(str(exc)) from exc
        except (_Transient, _Refused, _Rejected) as exc:
            raise WmsUnavailable(f"InvenTree stock snapshot failed: {exc}") from exc
        return Snapshot(store_id=self.store_id, version=version, as_of=started, levels=levels)

    def item_master(self) -> list[ItemRecord]:
        """Parts with an IPN; keywords are their barcodes and aliases; the case parameter their case size."""
        try:
            parts = [p for p in self._pages("/api/part/", {}) if p.get("IPN")]
            cases: dict[int, Decimal] = {}
            if self.settings.case_parameter:
                templates = self._pages("/api/part/parameter/template/", {"name": self.settings.case_parameter})
                for template in templates:
                    if template.get("name") == self.settings.case_parameter:
                        for row in self._pages("/api/part/parameter/", {"template": int(template["pk"])}):
                            cases[int(row["part"])] = _dec(row.get("data"))
        except _Auth as exc:
            raise WmsAuthError(str(exc)) from exc
        except (_Transient, _Refused) as exc:
            raise WmsUnavailable(f"InvenTree item master failed: {exc}") from exc
        items = []
        for part in parts:
            units = str(part.get("units") or "")
            base = self.settings.unit_codes.get(units, units.upper() or "EA")
            unit_map = {base: Decimal(1)}
            if cases.get(int(part["pk"]), Decimal(0)) > 0:
                unit_map["CS"] = cases[int(part["pk"])]
            codes = [c for c in re.split(r"[\s,]+", str(part.get("keywords") or "")) if c]
            items.append(
                ItemRecord(
                    sku=str(part["IPN"]),
                    description=str(part.get("name") or ""),
                    base_unit=base,
                    units=unit_map,
                    barcodes=tuple(c for c in codes if c.isdigit()),
                    aliases=tuple(c for c in codes if not c.isdigit()),
                    status="active" if part.get("active", True) else "inactive",
                )
            )
        return items

    def ping(self) -> float:
        """GET the store's location with the token; return the round trip in seconds."""
        started = time.monotonic()
        try:
            self._request("GET", "/api/user/me/", None)
        except _Auth as exc:
            raise WmsAuthError(str(exc)) from exc
        except (_Transient, _Refused) as exc:
            raise WmsUnavailable(str(exc)) from exc
        return time.monotonic() - started

    def refresh_credentials(self) -> bool:
        """Re-read the token from its secret store; True if it changed."""
        token = self._secrets(self.settings.token)
        changed = token != self._token
        self._token = token
        return changed

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- HTTP --------------------------------------------------------------------------------

    def _pages(self, path: str, params: dict[str, Any]) -> list[Any]:
        rows: list[Any] = []
        while True:
            page = self._request("GET", path, None, {**params, "limit": PAGE, "offset": len(rows)})
            if isinstance(page, list):
                return rows + page
            try:
                batch = list(page["results"])
                count = int(page["count"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _Transient(f"InvenTree answered {path} with an unexpected page: {exc}") from exc
            rows += batch
            if not batch or len(rows) >= count:
                return rows

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: Any, params: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Token {self._token}", "Accept": "application/json"}
        try:
            response = self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise _Transient(f"InvenTree not reachable: {describe(exc)}") from exc
        status = response.status_code
        if status in (401, 403):
            raise _Auth(f"InvenTree refused the token (HTTP {status}): {_message(response)}")
        if 300 <= status < 400:
            raise _Transient(redirect_message(response), status=status)
        if status in (408, 425, 429) or status >= 500:
            raise _Transient(
                f"InvenTree answered HTTP {status}: {_message(response)}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                status=status,
            )
        if status >= 400:
            raise _Refused(status, _message(response))
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise _Transient(f"InvenTree answered {path} with a body that is not JSON") from exc


def _message(response: httpx.Response) -> str:
    """InvenTree's own words about an error (DRF puts them in ``detail`` or per field), short."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().replace("\n", " ")[:300] or response.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return str(body["detail"])[:300]
        return "; ".join(f"{k}: {v}" for k, v in body.items())[:300]
    return str(body)[:300]


def _dec(value: object) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def build(settings: InvenTreeWmsSettings, store_id: str, secrets: SecretLookup) -> InvenTreeWmsClient:
    """Build an InvenTree client (the factory registered for ``wms.kind = "inventree"``)."""
    return InvenTreeWmsClient(settings, store_id, secrets)


register("inventree", InvenTreeWmsSettings, build)
