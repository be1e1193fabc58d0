"""The local API: status, actions, exceptions, history, and the status page (see ``security``).

Invariants:
- Every ``/api/v1`` route except login needs the API token or a session (``security.Guard``).
- Actions only ask the running agent to do what the CLI can do; they never touch the outbox
  behind the agent's back.
- The status page and its assets ship inside the package: no CDN, nothing fetched from elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict
from importlib.resources import files
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from agent.api.security import SESSION_COOKIE, SESSION_TTL_S, BodyLimit, Guard, Sessions
from outbox.exceptions import ExceptionNotFound, ExceptionView
from outbox.stock import StockRecord

API = "/api/v1"
DEFAULT_NOTE = "resolved on the status page"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


class ActionRefused(ValueError):
    """An action that cannot be done as asked; the message says why and what to do."""


class AgentControl(Protocol):
    """What the API needs from the running agent."""

    def status(self) -> dict[str, Any]:
        """Return the status record (same as ``possync status --json``)."""
        ...

    def history(self) -> list[dict[str, Any]]:
        """Return per-minute points: at, pending, delivered, captured."""
        ...

    def sync_now(self) -> None:
        """End any backoff wait and deliver now."""
        ...

    def pause(self) -> None:
        """Stop delivering (capture continues)."""
        ...

    def resume(self) -> None:
        """Deliver again."""
        ...

    def list_exceptions(self, include_resolved: bool) -> list[ExceptionView]:
        """Return exceptions, oldest first."""
        ...

    def retry_exception(self, exception_id: int) -> str:
        """Retry one exception; raise ``ActionRefused`` with the reason if it cannot be."""
        ...

    def resolve_exception(self, exception_id: int, note: str) -> str:
        """Resolve one exception; raise ``ActionRefused`` if it cannot be."""
        ...

    def stock_records(self, sku: str | None) -> list[StockRecord]:
        """Return the effective stock of one SKU (or barcode/alias), or of every SKU."""
        ...

    def refresh_stock(self) -> bool:
        """Pull a stock snapshot from the WMS now; True if it was newer than the stored one."""
        ...


class SourceHealthOut(BaseModel):
    """One capture source's health."""

    state: str
    last_capture_at: float | None = None
    captured: int = 0
    files_quarantined: int = 0
    last_error: str | None = None


class StatusOut(BaseModel):
    """The agent's status: the colour, the reasons in words, and the numbers behind them."""

    state: str = Field(description="green | amber | red | grey")
    reasons: list[str]
    store_id: str
    agent_running: bool
    pending: int = Field(description="movements that will be delivered without anyone acting")
    in_flight: int
    acked: int
    rejected: int
    held: int
    exceptions_open: int
    oldest_pending_age_s: float | None
    sla_s: float
    last_sync_at: str | None
    wms_reachable: bool | None
    wms_latency_ms: float | None
    offline_since: str | None
    auth_failed: bool
    paused: bool
    last_error: str | None
    item_master_items: int | None
    item_master_at: str | None
    sources: dict[str, SourceHealthOut]
    disk_free_mb: float | None
    version: str | None
    api_url: str | None = Field(None, description="where this API listens")
    heartbeat_at: str | None
    snapshot_version: int | None = Field(None, description="WMS version of the newest stock snapshot")
    snapshot_age_s: float | None = Field(None, description="seconds since the WMS last confirmed the snapshot")
    reconcile_day: str | None = Field(None, description="business day of the last daily reconciliation")
    reconcile_drift_skus: int | None = Field(None, description="SKUs that differed in it")
    drift_threshold: int = Field(0, description="more SKUs than this differing turns the state red")


class StockRecordOut(BaseModel):
    """The store's stock of one SKU at one location: the WMS snapshot plus what the WMS has not applied yet."""

    sku: str
    location: str
    snapshot_on_hand: str = Field(description="on hand in the newest WMS snapshot (decimal string)")
    pending_delta: str = Field(description="sum of local movements the snapshot does not include yet")
    effective_on_hand: str = Field(description="snapshot_on_hand + pending_delta")
    allocated: str
    available: str = Field(description="available to sell: the snapshot's available + pending_delta")
    snapshot_as_of: str | None = Field(description="the WMS's time of the snapshot")
    snapshot_age_s: float | None = Field(description="seconds since the WMS last confirmed the snapshot")


class PointOut(BaseModel):
    """One minute of history."""

    at: float
    pending: int
    delivered: int
    captured: int


class ExceptionOut(BaseModel):
    """An exception, with where the line came from and the reason in words."""

    id: int
    category: str
    status: str
    code: str
    message: str
    source: str
    source_ref: str
    pos_transaction_id: str | None
    line_no: int | None
    raw_item_id: str | None
    raw: str
    event_id: str | None
    occurrences: int
    created_at: float
    updated_at: float
    resolution: str | None


class ResolveIn(BaseModel):
    """Why an exception is resolved without delivery."""

    note: str = Field(DEFAULT_NOTE, max_length=500)


class LoginIn(BaseModel):
    """The API token, typed into the status page's login form."""

    token: str = Field(max_length=500)


class Message(BaseModel):
    """What an action did, in words."""

    ok: bool
    message: str


class LoginCode(BaseModel):
    """A one-time code and the URL that turns it into a browser session."""

    code: str
    url: str


def _static(name: str) -> bytes:
    return files("agent.api").joinpath("static", name).read_bytes()


def create_app(
    control: AgentControl | None,
    token: str,
    *,
    bind: str = "127.0.0.1",
    hosts: list[str] | None = None,
    max_body_bytes: int = 1024 * 1024,
    routers: list[APIRouter] | None = None,
    sessions: Sessions | None = None,
    schemas: list[type[BaseModel]] | None = None,
) -> tuple[BodyLimit, FastAPI]:
    """Build the local API around a running agent; return (the ASGI app to serve, the FastAPI app).

    ``control`` may be None only to render the OpenAPI document.
    """
    from agent.api.security import allowed_hosts

    sessions = sessions or Sessions()
    guard = Guard(token, sessions)
    app = FastAPI(
        title="possync local API",
        version="1",
        description="Status, actions and exceptions of one store's possync agent. Bound to 127.0.0.1 by "
        "default; every route needs `Authorization: Bearer <api_token>` or a status-page session.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the token like every other API route
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(bind, hosts or []))

    def agent() -> AgentControl:
        if control is None:
            raise HTTPException(503, "the agent is not running")
        return control

    @app.exception_handler(HTTPException)
    async def _error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "REFUSED", 503: "UNAVAILABLE"}
        return JSONResponse(
            {"code": code.get(exc.status_code, "BAD_REQUEST"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=dict(exc.headers) if exc.headers else None,
        )

    api = APIRouter(prefix=API, dependencies=[Depends(guard)])

    @api.get("/status", response_model=StatusOut, summary="Sync status")
    def status() -> dict[str, Any]:
        """Return the state colour, the reasons in words, and the numbers behind them."""
        return agent().status()

    @api.get("/history", response_model=list[PointOut], summary="Per-minute backlog history")
    def history() -> list[dict[str, Any]]:
        """Pending at the end of each minute, and what was captured and delivered during it (6 h)."""
        return agent().history()

    @api.post("/sync-now", response_model=Message, summary="Deliver now")
    def sync_now() -> dict[str, Any]:
        """End any backoff wait and re-check credentials."""
        agent().sync_now()
        return {"ok": True, "message": "delivery started"}

    @api.post("/pause", response_model=Message, summary="Pause delivery")
    def pause() -> dict[str, Any]:
        """Stop delivering after the batch in flight; capture continues."""
        agent().pause()
        return {"ok": True, "message": "delivery paused; capture continues"}

    @api.post("/resume", response_model=Message, summary="Resume delivery")
    def resume() -> dict[str, Any]:
        """Deliver again."""
        agent().resume()
        return {"ok": True, "message": "delivery resumed"}

    @api.get("/exceptions", response_model=list[ExceptionOut], summary="Exception queue")
    def exceptions(all: bool = False) -> list[dict[str, Any]]:
        """Open exceptions (``all=true`` includes resolved ones), oldest first."""
        return [asdict(v) for v in agent().list_exceptions(all)]

    @api.post("/exceptions/{exception_id}/retry", response_model=Message, responses={409: {"model": Message}})
    def retry(exception_id: int) -> dict[str, Any]:
        """Send a rejected movement again, or map a held one with the current item master."""
        return _act(lambda: agent().retry_exception(exception_id))

    @api.post("/exceptions/{exception_id}/resolve", response_model=Message, responses={409: {"model": Message}})
    def resolve(exception_id: int, body: ResolveIn | None = None) -> dict[str, Any]:
        """Close an exception without delivering it."""
        note = body.note if body else DEFAULT_NOTE
        return _act(lambda: agent().resolve_exception(exception_id, note))

    @api.get("/stock", response_model=list[StockRecordOut], responses={404: {"model": Message}}, summary="Stock view")
    def stock(sku: str | None = None, limit: int = Query(1000, ge=1, le=100_000), offset: int = Query(0, ge=0)) -> Any:
        """Effective stock of one SKU (``sku`` may be a barcode or alias), or a page of every SKU."""
        records = agent().stock_records(sku)
        if sku is not None and not records:
            raise HTTPException(404, f"{sku!r} is not a SKU, barcode or alias the agent knows")
        return [r.to_json() for r in records[offset : offset + limit]]

    @api.post("/stock/refresh", response_model=Message, responses={503: {"model": Message}}, summary="Pull stock now")
    def refresh_stock() -> dict[str, Any]:
        """Pull the store's stock snapshot from the WMS now (it is also pulled every ``wms.snapshot_every``)."""
        try:
            stored = agent().refresh_stock()
        except Exception as exc:
            raise HTTPException(503, f"the WMS snapshot could not be pulled: {exc}") from None
        return {"ok": True, "message": "snapshot stored" if stored else "the stored snapshot is already current"}

    @api.post("/login-code", response_model=LoginCode, summary="One-time code for the status page")
    def login_code(request: Request) -> dict[str, Any]:
        """Mint a code that opens a browser session at ``/login?code=...`` (valid one minute, once)."""
        code = sessions.mint_code()
        return {"code": code, "url": f"{str(request.base_url).rstrip('/')}/login?code={code}"}

    @api.get("/openapi.json", include_in_schema=False)
    def openapi_document() -> dict[str, Any]:
        return app.openapi()

    for router in routers or []:
        api.include_router(router)
    app.include_router(api)

    @app.post(f"{API}/login", response_model=Message, summary="Status page login")
    def login(body: LoginIn, response: Response) -> dict[str, Any]:
        """Exchange the API token for a session cookie."""
        if not guard.token_ok(body.token):
            raise HTTPException(401, "that is not this agent's API token")
        _set_session(response, sessions.create())
        return {"ok": True, "message": "signed in"}

    @app.post(f"{API}/logout", response_model=Message, summary="End the status page session")
    def logout(request: Request, response: Response) -> dict[str, Any]:
        """Forget the session."""
        sessions.end(request.cookies.get(SESSION_COOKIE))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return {"ok": True, "message": "signed out"}

    @app.get("/login", include_in_schema=False)
    def login_with_code(code: str = "") -> Response:
        if not sessions.redeem(code):
            return RedirectResponse("/?expired=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        _set_session(response, sessions.create())
        return response

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers=_page_headers())

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or "\\" in name or suffix not in STATIC_TYPES:
            raise HTTPException(404, "no such file")
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError):
            raise HTTPException(404, "no such file") from None
        return Response(body, media_type=STATIC_TYPES[suffix], headers={"Cache-Control": "no-cache"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in schemas or []:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return BodyLimit(app, max_body_bytes), app


def _act(action: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "message": action()}
    except ExceptionNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ActionRefused as exc:
        raise HTTPException(409, str(exc)) from None


def _set_session(response: Response, sid: str) -> None:
    response.set_cookie(SESSION_COOKIE, sid, max_age=SESSION_TTL_S, httponly=True, samesite="strict", path="/")


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
