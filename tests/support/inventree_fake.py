"""A double of the InvenTree REST API subset possync uses, served over a real socket on 127.0.0.1.

Built from InvenTree's API schema and source (stock, part and tracking endpoints), including the
behaviours the client must survive:
- ``Authorization: Token <token>``; anything else is 401.
- ``POST /api/stock/remove/`` takes at most what an item holds: asked for more, it stops at zero and
  still answers 201.
- A stock item that reaches zero is deleted (with its tracking history) unless ``delete_on_deplete``
  is false.
- Faults on demand: 429 with Retry-After, and 500 "database is locked" (SQLite backend under write
  contention).
- Lists are paged with ``limit``/``offset`` (``{"count", "next", "previous", "results"}``).
"""

from __future__ import annotations

import csv
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


class InvenTreeFake:
    """In-memory InvenTree: parts, locations, stock items, tracking entries, part parameters."""

    def __init__(self, token: str = "inventree-token-1") -> None:
        self.token = token
        self.lock = threading.Lock()
        self.parts: dict[int, dict[str, Any]] = {}
        self.locations: dict[int, dict[str, Any]] = {}
        self.items: dict[int, dict[str, Any]] = {}
        self.tracking: list[dict[str, Any]] = []
        self.templates: dict[int, dict[str, Any]] = {}
        self.parameters: list[dict[str, Any]] = []
        self.ids = 0
        self.throttle_left = 0
        self.retry_after = 1
        self.locked_left = 0
        self.port = 0
        self.app = self._app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- setup -------------------------------------------------------------------------------

    def _id(self) -> int:
        self.ids += 1
        return self.ids

    def add_location(self, name: str) -> int:
        pk = self._id()
        self.locations[pk] = {"pk": pk, "name": name, "pathstring": name, "structural": False}
        return pk

    @classmethod
    def from_items_csv(cls, path: Path) -> InvenTreeFake:
        """Parts (IPN = SKU, keywords = barcodes and aliases, parameter case_qty) and opening stock."""
        fake = cls()
        for name in ("S001", "DC01", "S001-DMG"):
            fake.add_location(name)
        template = fake._id()
        fake.templates[template] = {"pk": template, "name": "case_qty", "units": ""}
        by_name = {loc["name"]: pk for pk, loc in fake.locations.items()}
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        parts: dict[str, int] = {}
        for row in rows:
            if row["sku"] not in parts:
                pk = fake._id()
                parts[row["sku"]] = pk
                fake.parts[pk] = {
                    "pk": pk,
                    "IPN": row["sku"],
                    "name": row["description"],
                    "active": True,
                    "units": "",
                    "keywords": " ".join(c for c in row["barcodes"].split("|") if c),
                }
                fake.parameters.append({"pk": fake._id(), "part": pk, "template": template, "data": row["case_qty"]})
            item = fake._id()
            fake.items[item] = {
                "pk": item,
                "part": parts[row["sku"]],
                "location": by_name[row["location"]],
                "quantity": Decimal(row["on_hand"]),
                "delete_on_deplete": True,
            }
        return fake

    # -- switches and checks -----------------------------------------------------------------

    def throttle(self, retry_after: int, times: int = 1_000_000) -> None:
        """Answer the next ``times`` requests 429 with ``Retry-After``."""
        self.throttle_left, self.retry_after = times, retry_after

    def lock_database(self, times: int) -> None:
        """Answer the next ``times`` write requests 500 "database is locked" (nothing applied)."""
        self.locked_left = times

    def applied(self, event_id: str) -> int:
        """How many stock operations carry this event id in their notes (a transfer counts once)."""
        with self.lock:
            operations = {t["operation"] for t in self.tracking if event_id in (t["notes"] or "")}
        return len(operations)

    def on_hand(self, sku: str, location: str) -> Decimal:
        part = next(pk for pk, p in self.parts.items() if p["IPN"] == sku)
        loc = next(pk for pk, p in self.locations.items() if p["name"] == location)
        return sum(
            (i["quantity"] for i in self.items.values() if i["part"] == part and i["location"] == loc), Decimal(0)
        )

    # -- server ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "InvenTree fake did not start"
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # -- the API -----------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Response:
            if request.headers.get("authorization") != f"Token {fake.token}":
                return JSONResponse({"detail": "Invalid token."}, status_code=401)
            if fake.throttle_left > 0:
                fake.throttle_left -= 1
                return JSONResponse(
                    {"detail": "Request was throttled."},
                    status_code=429,
                    headers={"Retry-After": str(fake.retry_after)},
                )
            if request.method != "GET" and fake.locked_left > 0:
                fake.locked_left -= 1
                return JSONResponse({"detail": "database is locked"}, status_code=500)
            response: Response = await call_next(request)
            return response

        def page(rows: list[dict[str, Any]], request: Request) -> Any:
            rows = [_jsonable(r) for r in rows]
            if "limit" not in request.query_params:
                return rows
            limit, offset = int(request.query_params["limit"]), int(request.query_params.get("offset", 0))
            return {"count": len(rows), "next": None, "previous": None, "results": rows[offset : offset + limit]}

        @app.get("/api/user/me/")
        def me() -> Any:
            return {"pk": 1, "username": "possync"}

        @app.get("/api/part/")
        def parts(request: Request) -> Any:
            ipn = request.query_params.get("IPN")
            rows = [p for p in fake.parts.values() if ipn is None or p["IPN"] == ipn]
            return page(rows, request)

        @app.get("/api/part/parameter/template/")
        def templates(request: Request) -> Any:
            name = request.query_params.get("name")
            return page([t for t in fake.templates.values() if name is None or t["name"] == name], request)

        @app.get("/api/part/parameter/")
        def parameters(request: Request) -> Any:
            template = request.query_params.get("template")
            rows = [p for p in fake.parameters if template is None or p["template"] == int(template)]
            return page(rows, request)

        @app.get("/api/stock/location/")
        def locations(request: Request) -> Any:
            name = request.query_params.get("name")
            return page([loc for loc in fake.locations.values() if name is None or loc["name"] == name], request)

        @app.get("/api/stock/track/")
        def track(request: Request) -> Any:
            term = (request.query_params.get("search") or "").lower()
            with fake.lock:
                rows = [t for t in fake.tracking if term in (t["notes"] or "").lower()]
            return page(rows, request)

        @app.get("/api/stock/")
        def stock(request: Request) -> Any:
            q = request.query_params
            with fake.lock:
                rows = [
                    {**i, "part_detail": {"pk": i["part"], "IPN": fake.parts[i["part"]]["IPN"]}}
                    for i in fake.items.values()
                    if ("part" not in q or i["part"] == int(q["part"]))
                    and ("location" not in q or i["location"] == int(q["location"]))
                    and (q.get("in_stock") != "true" or i["quantity"] > 0)
                ]
            return page(rows, request)

        @app.post("/api/stock/")
        async def create_item(request: Request) -> Any:
            body = await request.json()
            with fake.lock:
                pk = fake._id()
                fake.items[pk] = {
                    "pk": pk,
                    "part": int(body["part"]),
                    "location": int(body["location"]),
                    "quantity": Decimal(str(body.get("quantity", "0"))),
                    "delete_on_deplete": bool(body.get("delete_on_deplete", True)),
                }
                return JSONResponse(_jsonable(fake.items[pk]), status_code=201)

        @app.patch("/api/stock/{pk}/")
        async def patch_item(pk: int, request: Request) -> Any:
            body = await request.json()
            with fake.lock:
                if pk not in fake.items:
                    return JSONResponse({"detail": "No StockItem matches the given query."}, status_code=404)
                if "delete_on_deplete" in body:
                    fake.items[pk]["delete_on_deplete"] = bool(body["delete_on_deplete"])
                return _jsonable(fake.items[pk])

        def adjust(body: dict[str, Any], sign: int, location: int | None = None) -> Response:
            items = body.get("items") or []
            if not items:
                return JSONResponse({"items": ["A list of stock items must be provided"]}, status_code=400)
            with fake.lock:
                for entry in items:
                    if int(entry["pk"]) not in fake.items:
                        return JSONResponse({"items": [{"pk": ["Invalid pk"]}]}, status_code=400)
                operation = fake._id()
                for entry in items:
                    item = fake.items[int(entry["pk"])]
                    quantity = Decimal(str(entry["quantity"]))
                    if location is not None:  # transfer: split off the quantity and move it
                        quantity = min(quantity, item["quantity"])
                        item["quantity"] -= quantity
                        target = next(
                            (
                                i
                                for i in fake.items.values()
                                if i["part"] == item["part"] and i["location"] == location and i is not item
                            ),
                            None,
                        )
                        if target is None or not body.get("merge"):
                            pk = fake._id()
                            target = fake.items[pk] = {**item, "pk": pk, "location": location, "quantity": Decimal(0)}
                        target["quantity"] += quantity
                        fake._track(target, operation, body.get("notes"))
                    elif sign < 0:
                        item["quantity"] = max(item["quantity"] - quantity, Decimal(0))  # stops at zero, still 201
                    else:
                        item["quantity"] += quantity
                    fake._track(item, operation, body.get("notes"))
                    if item["quantity"] == 0 and item["delete_on_deplete"]:
                        del fake.items[item["pk"]]
                        fake.tracking = [t for t in fake.tracking if t["item"] != item["pk"]]
            return JSONResponse(body, status_code=201)

        @app.post("/api/stock/remove/")
        async def remove(request: Request) -> Response:
            return adjust(await request.json(), -1)

        @app.post("/api/stock/add/")
        async def add(request: Request) -> Response:
            return adjust(await request.json(), 1)

        @app.post("/api/stock/transfer/")
        async def transfer(request: Request) -> Response:
            body = await request.json()
            return adjust(body, 0, int(body["location"]))

        return app

    def _track(self, item: dict[str, Any], operation: int, notes: str | None) -> None:
        self.tracking.append(
            {
                "pk": self._id(),
                "item": item["pk"],
                "operation": operation,
                "notes": notes or "",
                "quantity": item["quantity"],
            }
        )


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in row.items() if k != "operation"}
