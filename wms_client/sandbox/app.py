"""The sandbox WMS's HTTP interface: the possync WMS protocol v1, plus switches for faults.

Invariants:
- Every route requires ``Authorization: Bearer <token>``; the token can be rotated at run time.
- ``POST /v1/stores/{store_id}/movements`` answers one result per event, in order; a malformed
  event is rejected on its own, it never fails the batch.
- Fault switches (``/_sandbox/faults``) only ever make the server behave like a real WMS on a
  bad day: slow, overloaded, failing before or after it applied a batch, or not listening.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from wms_client.sandbox.ledger import Ledger

MAX_EVENTS = 500
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass
class Faults:
    """Switches that make the sandbox misbehave on purpose (all off by default)."""

    error_rate: float = 0.0  # share of pushes answered 503 before anything is applied
    fail_after_commit_rate: float = 0.0  # share of pushes applied, then answered 500
    throttle_rate: float = 0.0  # share of requests answered 429 with Retry-After
    retry_after_s: int = 1
    retry_after_http_date: bool = False  # send Retry-After as an HTTP date instead of seconds
    latency_ms: int = 0  # delay before answering a push (after applying it)
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def public(self) -> dict[str, Any]:
        """Return the switches as JSON."""
        out = asdict(self)
        out.pop("rng", None)
        return out

    def hit(self, rate: float) -> bool:
        """Return True with probability ``rate``."""
        return rate > 0 and self.rng.random() < rate


@dataclass
class SandboxState:
    """Everything the routes share: the ledger, the token, faults and counters."""

    ledger: Ledger
    token: str
    faults: Faults
    refuse: Callable[[float], None] = lambda _s: None
    # In-process test seam: called with "push.received", "push.applied" (before the answer is sent)
    # and "stock.page", so a crash harness can kill the agent at exactly those moments.
    probe: Callable[[str], None] = lambda _event: None
    counters: dict[str, int] = field(default_factory=lambda: {"requests": 0, "pushes": 0})


# -- documentation models (the OpenAPI document is generated from these) --------------------


class EventIn(BaseModel):
    """One movement event as the agent sends it."""

    event_id: str = Field(description="Idempotency key; the same POS line always has the same id.")
    store_id: str
    terminal_id: str
    pos_transaction_id: str
    line_no: int
    business_day: str = Field(description="ISO date of the POS business day.")
    occurred_at: str = Field(description="ISO 8601 date-time with offset.")
    kind: str = Field(description="sale | return | transfer_out | transfer_in | adjustment")
    sku: str
    quantity: str = Field(description="Decimal string in the item's base unit; positive except adjustments.")
    unit: str | None = None
    original_quantity: str | None = None
    original_unit: str | None = None
    raw_item_id: str | None = None
    location: str
    counterpart_location: str | None = Field(None, description="Required for transfers.")
    disposition: str | None = Field(None, description="Returns: sellable | damaged | hold.")
    unit_price: str | None = None
    currency: str | None = None
    source: str | None = None
    source_ref: str | None = None


class MovementBatch(BaseModel):
    """A batch of up to 500 events."""

    events: list[EventIn] = Field(max_length=MAX_EVENTS)


class EventResultOut(BaseModel):
    """The result for one event."""

    event_id: str
    status: str = Field(description="accepted | duplicate | rejected")
    code: str | None = Field(
        None,
        description="For rejections: UNKNOWN_SKU, ITEM_INACTIVE, BAD_QUANTITY, UNKNOWN_LOCATION, "
        "LOCATION_CLOSED, MISSING_COUNTERPART, STORE_MISMATCH, INVALID_EVENT.",
    )
    message: str | None = None
    accepted_at: str | None = Field(None, description="When the event was (first) applied.")
    seq: int | None = Field(
        None,
        description="Ledger position of the applied event (accepted or duplicate). A stock snapshot whose "
        "`version` is at or above it already includes the event; one below it does not.",
    )


class PushResponse(BaseModel):
    """Per-event results, in the order the events were sent."""

    results: list[EventResultOut]


class StockItemOut(BaseModel):
    """Stock of one SKU at one location."""

    sku: str
    location: str
    on_hand: str
    allocated: str
    available: str


class StockPage(BaseModel):
    """One page of a stock snapshot pinned to ``version``."""

    store_id: str
    version: int = Field(
        description="Ledger position the snapshot is pinned to: it includes every event whose `seq` is at or below it."
    )
    as_of: str
    items: list[StockItemOut]
    next_page_token: str | None


class ItemOut(BaseModel):
    """One item of the item master."""

    sku: str
    description: str
    base_unit: str
    units: dict[str, str] = Field(description="Unit code -> quantity of base units.")
    barcodes: list[str]
    aliases: list[str]
    status: str


class ItemsPage(BaseModel):
    """One page of the item master."""

    items: list[ItemOut]
    next_page_token: str | None


class Health(BaseModel):
    """Liveness and the current ledger version."""

    status: str
    version: int
    time: str


class ErrorOut(BaseModel):
    """An error answer."""

    code: str
    message: str


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode_token(token: str) -> Any:
    padded = token + "=" * (-len(token) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, json.JSONDecodeError):
        raise HTTPException(400, "page_token is not valid") from None


def create_app(state: SandboxState) -> FastAPI:
    """Build the sandbox WMS application around shared state."""
    app = FastAPI(
        title="possync WMS protocol",
        version="1",
        description="The protocol between the possync store agent and a WMS. The sandbox WMS "
        "(`possync sandbox`) is its reference implementation.",
        docs_url=None,
        redoc_url=None,
    )

    @app.middleware("http")
    async def _count_and_throttle(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        state.counters["requests"] += 1
        faults = state.faults
        if request.url.path.startswith("/v1/") and faults.hit(faults.throttle_rate):
            when = (
                email.utils.formatdate(time.time() + faults.retry_after_s, usegmt=True)
                if faults.retry_after_http_date
                else str(faults.retry_after_s)
            )
            return _error(429, "RATE_LIMITED", "too many requests", {"Retry-After": when})
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        code = {401: "UNAUTHORIZED", 404: "NOT_FOUND", 413: "TOO_LARGE"}.get(exc.status_code, "BAD_REQUEST")
        return _error(exc.status_code, code, str(exc.detail), headers)

    def require_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(presented.encode(), state.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_token)]

    @app.post(
        "/v1/stores/{store_id}/movements",
        dependencies=auth,
        response_model=PushResponse,
        responses={
            400: {"model": ErrorOut},
            401: {"model": ErrorOut},
            413: {"model": ErrorOut},
            429: {"model": ErrorOut},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MovementBatch"}}},
            }
        },
        summary="Apply movements (idempotent on event_id)",
    )
    async def push(store_id: str, request: Request) -> Any:
        """Apply up to 500 events; each answers accepted, duplicate or rejected."""
        state.counters["pushes"] += 1
        state.probe("push.received")
        faults = state.faults
        if faults.hit(faults.error_rate):
            return _error(503, "UNAVAILABLE", "the WMS is temporarily unavailable (injected fault)")
        try:
            body = await request.body()
        except ClientDisconnect:  # the client went away mid-request (e.g. killed): nothing was applied
            return _error(400, "CLIENT_GONE", "the client disconnected before the body arrived")
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "TOO_LARGE", f"request body over {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "BAD_REQUEST", "body is not JSON")
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            return _error(400, "BAD_REQUEST", "body must be an object with an 'events' list")
        if len(events) > MAX_EVENTS:
            return _error(413, "TOO_LARGE", f"at most {MAX_EVENTS} events per request")
        verdicts = await run_in_threadpool(state.ledger.apply, store_id, events)
        state.probe("push.applied")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.hit(faults.fail_after_commit_rate):
            return _error(500, "INTERNAL", "the WMS failed after applying the batch (injected fault)")
        return JSONResponse({"results": [v.to_json() for v in verdicts]})

    @app.get("/v1/stores/{store_id}/stock", dependencies=auth, response_model=StockPage, summary="Stock snapshot")
    def stock(
        store_id: str,
        page_size: int = Query(1000, ge=1, le=5000),
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """Return one page of the store's stock, pinned to the version of the first page."""
        state.probe("stock.page")
        if page_token:
            decoded = _decode_token(page_token)
            version, after = int(decoded["v"]), (str(decoded["s"]), str(decoded["l"]))
        else:
            version, after = state.ledger.version(), None
        items, nxt, as_of = state.ledger.stock_page(store_id, version, after, page_size)
        token = _encode_token({"v": version, "s": nxt[0], "l": nxt[1]}) if nxt else None
        return {"store_id": store_id, "version": version, "as_of": as_of, "items": items, "next_page_token": token}

    @app.get("/v1/items", dependencies=auth, response_model=ItemsPage, summary="Item master")
    def items(page_size: int = Query(1000, ge=1, le=5000), page_token: str | None = None) -> dict[str, Any]:
        """Return one page of the item master, ordered by SKU."""
        after = str(_decode_token(page_token)["s"]) if page_token else None
        page, nxt = state.ledger.items_page(after, page_size)
        return {"items": page, "next_page_token": _encode_token({"s": nxt}) if nxt else None}

    @app.get("/v1/health", dependencies=auth, response_model=Health, summary="Health")
    def health() -> dict[str, Any]:
        """Liveness plus the ledger version; also checks the token."""
        return {"status": "ok", "version": state.ledger.version(), "time": datetime.now(UTC).isoformat()}

    # -- sandbox-only routes (not part of the protocol) --------------------------------------

    @app.get("/_sandbox/ledger", dependencies=auth, include_in_schema=False)
    def ledger(after: int = 0, limit: int = Query(10_000, ge=1, le=100_000)) -> dict[str, Any]:
        return {"events": state.ledger.ledger_rows(after, limit)}

    @app.get("/_sandbox/stock", dependencies=auth, include_in_schema=False)
    def all_stock() -> dict[str, Any]:
        return {"stock": state.ledger.all_stock()}

    @app.get("/_sandbox/stats", dependencies=auth, include_in_schema=False)
    def stats() -> dict[str, Any]:
        return {**state.ledger.stats(), **state.counters, "faults": state.faults.public()}

    @app.post("/_sandbox/faults", dependencies=auth, include_in_schema=False)
    async def set_faults(request: Request) -> dict[str, Any]:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise HTTPException(400, "body must be an object")
        refuse_for = changes.pop("refuse_for_s", None)
        closed = changes.pop("closed_locations", None)
        for key, value in changes.items():
            if key not in Faults.__dataclass_fields__ or key == "rng":
                raise HTTPException(400, f"unknown fault switch {key!r}")
            setattr(state.faults, key, value)
        if state.faults.seed is not None:
            state.faults.rng.seed(state.faults.seed)
        if closed is not None:
            state.ledger.closed_locations = set(closed)
        if refuse_for:
            asyncio.get_running_loop().call_later(0.05, state.refuse, float(refuse_for))
        return state.faults.public()

    @app.post("/_sandbox/items", dependencies=auth, include_in_schema=False)
    async def add_items(request: Request) -> dict[str, int]:
        body = await request.json()
        if not isinstance(body, list) or not all(isinstance(i, dict) and i.get("sku") for i in body):
            raise HTTPException(400, "body must be a list of items, each with a 'sku'")
        return {"upserted": state.ledger.upsert_items(body)}

    @app.post("/_sandbox/token", dependencies=auth, include_in_schema=False)
    async def rotate_token(request: Request) -> dict[str, str]:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("token"), str) or not body["token"]:
            raise HTTPException(400, "body must be {'token': '<new token>'}")
        state.token = body["token"]
        return {"status": "rotated"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            batch = MovementBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(batch.pop("$defs", {}))
            components["MovementBatch"] = batch
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
