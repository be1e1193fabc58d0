"""``http_ingest``: the POS pushes transactions to ``POST /api/v1/transactions`` on the agent.

Invariants:
- 202 is answered only after the request's movements, issues and post-voids are committed to the
  outbox (``BatchSink.submit`` returned): "202 means it will reach the WMS".
- A body is validated as a whole by the shared POS transaction parser (``transactions``, strict): a
  malformed body is refused (400 not JSON, 422 with every field error and its JSON path) and nothing
  of it is stored, so the POS can fix it and send it again.
- A well-formed transaction whose item is unknown is accepted (202) and its line held in the
  exception queue, so the POS never has to hold a sale back.
- Ids are deterministic: sending the same transaction again answers the same ``event_id``s, marked
  ``duplicate``, and changes nothing.
- When the outbox cannot store (disk full, database locked) the answer is 503 with ``Retry-After``;
  nothing was stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from agent.domain import Movement
from pos_adapters.base import Batch, BatchSink, CaptureRefused, SourceContext, SourceHealth, SourceSettings, register
from pos_adapters.transactions import MAX_TRANSACTIONS, ParsedTransactions, TransactionsInvalid, parse_transactions

log = logging.getLogger("possync.source.http_ingest")
PATH = "/transactions"
RETRY_AFTER_S = 30


class HttpIngestSettings(SourceSettings):
    """``[[sources]]`` with ``kind = "http_ingest"`` (served on the agent's local API port)."""

    kind: Literal["http_ingest"] = "http_ingest"
    max_transactions: int = Field(1000, ge=1, le=MAX_TRANSACTIONS)


# -- documentation models for the OpenAPI document (the body itself is parsed by `transactions`) ----


class LineIn(BaseModel):
    """One line of a POS transaction."""

    line_no: int | None = Field(None, description="Line number in the transaction (default: its position, from 1).")
    item: str = Field(description="SKU, barcode or alias, as the POS knows it.")
    quantity: str | float = Field(description="Decimal string or number; negative on a sale means a return.")
    unit: str | None = Field(None, description="Unit of measure (EA, CS, KG...); default the item's base unit.")
    unit_price: str | float | None = None
    voided: bool = Field(False, description="A voided line moves nothing.")
    disposition: str | None = Field(None, description="Returns: sellable, damaged or hold.")


class VoidsIn(BaseModel):
    """The earlier transaction a post-void cancels."""

    transaction_id: str
    terminal_id: str | None = None
    business_day: str | None = None


class TransactionIn(BaseModel):
    """One POS transaction (DESIGN.md's POS transaction JSON)."""

    transaction_id: str
    terminal_id: str | None = None
    occurred_at: str = Field(description="ISO 8601; without an offset it is read in the store's time zone.")
    business_day: str | None = Field(None, description="ISO date; default the local date of occurred_at.")
    kind: str = Field(description="sale | return | transfer_out | transfer_in | adjustment | post_void")
    counterpart_location: str | None = Field(None, description="Required for transfers.")
    currency: str | None = None
    lines: list[LineIn] = Field(default_factory=list)
    voids: VoidsIn | None = Field(None, description="For post_void: the transaction it cancels (no lines).")


class TransactionsIn(BaseModel):
    """A batch of transactions (a single transaction object is accepted too)."""

    transactions: list[TransactionIn]


class TransactionOut(BaseModel):
    """What was stored for one transaction."""

    transaction_id: str
    event_ids: list[str]
    duplicate: list[str] = Field(description="Ids already stored before this request (a re-send).")
    held: list[str] = Field(description="Ids whose item or unit is unknown: kept in the exception queue.")


class IngestAccepted(BaseModel):
    """202: everything in the body is stored and will reach the WMS."""

    status: str = "accepted"
    transactions: list[TransactionOut]
    event_ids: list[str]
    post_voids: list[str] = Field(description="Reversing event ids created by post-voids in this request.")
    issues: int = Field(description="Lines that need a person (never for a 202 body: always 0 in strict mode).")


class FieldErrorOut(BaseModel):
    """One problem in the body."""

    path: str = Field(description="Where, e.g. transactions[3].lines[0].quantity")
    code: str
    message: str


class IngestRefused(BaseModel):
    """400/422/503: nothing of the body was stored."""

    code: str
    message: str
    errors: list[FieldErrorOut] = Field(default_factory=list)


class HttpIngestSource:
    """Accepts POS pushes through the local API and stores them before answering."""

    def __init__(self, settings: HttpIngestSettings, ctx: SourceContext) -> None:
        """Prepare the route; requests are refused (503) until ``run`` has a sink."""
        self.name = settings.name
        self.settings = settings
        self.ctx = ctx
        self.health = SourceHealth()
        self._sink: BatchSink | None = None
        self._ready = threading.Event()
        self.router = self._router()
        self.schemas: tuple[type[BaseModel], ...] = (TransactionsIn, TransactionIn)

    def run(self, sink: BatchSink, stop: threading.Event) -> None:
        """Make the route live until ``stop`` is set (the local API serves it)."""
        self._sink = sink
        self.health.state = "ok"
        self._ready.set()
        stop.wait()
        self._ready.clear()

    def _router(self) -> APIRouter:
        router = APIRouter()

        @router.post(
            PATH,
            status_code=202,
            response_model=IngestAccepted,
            responses={
                400: {"model": IngestRefused},
                413: {"model": IngestRefused},
                422: {"model": IngestRefused},
                503: {"model": IngestRefused},
            },
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/TransactionsIn"},
                                    {"$ref": "#/components/schemas/TransactionIn"},
                                ]
                            }
                        }
                    },
                }
            },
            summary="POS pushes transactions (answers 202 once they are durable)",
        )
        async def ingest(request: Request) -> JSONResponse:
            """Store one transaction or a batch; 202 once durable, with every event id."""
            body = await request.body()
            return await _in_thread(self.accept, body)

        return router

    def accept(self, body: bytes) -> JSONResponse:
        """Validate, store and answer one request body (runs in a worker thread)."""
        try:
            document = json.loads(body, parse_float=Decimal)
        except (UnicodeDecodeError, ValueError) as exc:
            return _refuse(400, "BAD_REQUEST", f"the body is not JSON: {exc}"[:300])
        except RecursionError:
            return _refuse(400, "BAD_REQUEST", "the body is not a POS transaction: JSON nested too deeply")
        count = (
            len(document["transactions"])
            if isinstance(document, dict) and isinstance(document.get("transactions"), list)
            else 1
        )
        if count > self.settings.max_transactions:
            return _refuse(
                413,
                "TOO_LARGE",
                f"{count} transactions in one request; this source takes at most {self.settings.max_transactions}",
            )
        try:
            received = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            parsed = parse_transactions(
                document, self.ctx, source=self.name, source_ref=f"{self.name} push {received}", strict=True
            )
        except TransactionsInvalid as exc:
            errors = [{"path": e.path, "code": e.code, "message": e.message} for e in exc.errors]
            return _refuse(422, "INVALID", f"{len(errors)} problem(s) in the body; nothing was stored", errors)
        if not self._ready.is_set() or self._sink is None:
            return _refuse(503, "NOT_READY", "the agent is starting or stopping; send again shortly", retry=True)
        try:
            result = self._sink.submit(Batch(movements=parsed.movements, issues=parsed.issues, voids=parsed.voids))
        except CaptureRefused as exc:
            self.health.state, self.health.last_error = "error", f"could not store a push: {exc}"
            log.error("%s: a push could not be stored (the POS will send it again): %s", self.name, exc)
            return _refuse(503, "NOT_STORED", f"the agent could not store the transactions: {exc}", retry=True)
        self.health.state, self.health.last_error = "ok", None
        self.health.last_capture_at = time.time()
        self.health.captured += len(result.new)
        return JSONResponse(_accepted(parsed, result.duplicates, result.held, result.reversals), status_code=202)


def _accepted(
    parsed: ParsedTransactions, duplicates: list[str], held: list[str], reversals: list[str]
) -> dict[str, Any]:
    duplicate_ids, held_ids = set(duplicates), set(held)
    by_transaction: dict[str, list[Movement]] = {}
    for movement in parsed.movements:
        by_transaction.setdefault(movement.pos_transaction_id, []).append(movement)
    for void in parsed.voids:
        by_transaction.setdefault(void.pos_transaction_id, [])
    transactions = [
        {
            "transaction_id": txn,
            "event_ids": [m.event_id for m in moves],
            "duplicate": [m.event_id for m in moves if m.event_id in duplicate_ids],
            "held": [m.event_id for m in moves if m.event_id in held_ids],
        }
        for txn, moves in by_transaction.items()
    ]
    return {
        "status": "accepted",
        "transactions": transactions,
        "event_ids": [m.event_id for m in parsed.movements],
        "post_voids": list(reversals),
        "issues": len(parsed.issues),
    }


def _refuse(
    status: int, code: str, message: str, errors: list[dict[str, str]] | None = None, *, retry: bool = False
) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse({"code": code, "message": message, "errors": errors or []}, status_code=status, headers=headers)


async def _in_thread(fn: Any, *args: Any) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    result: JSONResponse = await run_in_threadpool(fn, *args)
    return result


def build(settings: HttpIngestSettings, ctx: SourceContext) -> HttpIngestSource:
    """Build an http_ingest source (the factory registered for ``kind = "http_ingest"``)."""
    return HttpIngestSource(settings, ctx)


def replay(settings: HttpIngestSettings, ctx: SourceContext, path: Path) -> Iterator[Batch]:
    """Replay recorded request bodies (a JSON file, or JSON lines of bodies) as the route would store them."""
    text = path.read_text(encoding="utf-8-sig")
    bodies = [text] if path.suffix == ".json" else [line for line in text.splitlines() if line.strip()]
    for number, body in enumerate(bodies, start=1):
        parsed = parse_transactions(
            json.loads(body, parse_float=Decimal),
            ctx,
            source=settings.name,
            source_ref=f"{settings.name} push {number}",
            strict=True,
        )
        yield Batch(movements=parsed.movements, issues=parsed.issues, voids=parsed.voids)


register("http_ingest", HttpIngestSettings, build, replay)
