"""A POS REST API for tests: Shopify's Admin REST orders endpoint, served on 127.0.0.1.

Implements what the ``shopify-orders`` preset relies on, as Shopify documents it: ``updated_at_min``,
``limit``, ``status=any``, ``order=updated_at asc``, cursor paging through ``Link: <...page_info=...>;
rel="next"`` (a page_info request takes no other filters), the ``X-Shopify-Access-Token`` header,
and 429 with ``Retry-After``. Switches make it misbehave the way real POS APIs do.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATH = "/admin/api/2024-10/orders.json"
BASE_TIME = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


class FakeShopify:
    """Orders in memory, served like Shopify's REST Admin API."""

    def __init__(self, token: str, port: int = 0) -> None:
        self.token = token
        self.orders: dict[int, dict[str, Any]] = {}
        self.requests: list[dict[str, list[str]]] = []
        self.throttle_next = 0
        self.duplicate_boundary = False
        self.next_host: str | None = None
        self.clock = BASE_TIME
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = port

    # -- data --------------------------------------------------------------------------------

    def tick(self, seconds: int = 60) -> str:
        self.clock += timedelta(seconds=seconds)
        return self.clock.isoformat()

    def add_order(
        self, order_id: int, lines: list[tuple[int, str, int, str]], *, location_id: int = 1001
    ) -> dict[str, Any]:
        """Add an order; lines are (line item id, sku, quantity, price)."""
        now = self.tick()
        order = {
            "id": order_id,
            "name": f"#{order_id}",
            "created_at": now,
            "processed_at": now,
            "updated_at": now,
            "cancelled_at": None,
            "currency": "USD",
            "location_id": location_id,
            "source_name": "pos",
            "device_id": 7,
            "line_items": [
                {"id": lid, "sku": sku, "variant_id": lid * 10, "quantity": qty, "price": price, "gift_card": False}
                for lid, sku, qty, price in lines
            ],
            "refunds": [],
        }
        with self._lock:
            self.orders[order_id] = order
        return order

    def refund(self, order_id: int, refund_id: int, items: list[tuple[int, int, int, str]]) -> None:
        """Refund (refund line item id, line item id, quantity, restock_type) of an order."""
        now = self.tick()
        with self._lock:
            order = self.orders[order_id]
            by_id = {li["id"]: li for li in order["line_items"]}
            order["refunds"].append(
                {
                    "id": refund_id,
                    "created_at": now,
                    "processed_at": now,
                    "refund_line_items": [
                        {
                            "id": rid,
                            "line_item_id": lid,
                            "quantity": qty,
                            "restock_type": restock,
                            "line_item": by_id[lid],
                        }
                        for rid, lid, qty, restock in items
                    ],
                }
            )
            order["updated_at"] = now

    def cancel(self, order_id: int) -> None:
        now = self.tick()
        with self._lock:
            self.orders[order_id]["cancelled_at"] = now
            self.orders[order_id]["updated_at"] = now

    # -- server ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> FakeShopify:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        with self._lock:
            self.requests.append(query)
            if request.headers.get("X-Shopify-Access-Token") != self.token:
                return _send(request, 401, {"errors": "[API] Invalid API key or access token"})
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return _send(request, 429, {"errors": "Exceeded 2 calls per second"}, {"Retry-After": "0.2"})
            if url.path != PATH:
                return _send(request, 404, {"errors": "Not Found"})
            if "page_info" in query:
                if set(query) - {"page_info", "limit"}:
                    return _send(request, 400, {"errors": "page_info cannot be combined with other filters"})
                state = json.loads(base64.urlsafe_b64decode(query["page_info"][0]))
                since, offset = state["since"], state["offset"]
            else:
                since, offset = query.get("updated_at_min", [""])[0], 0
            limit = int(query.get("limit", ["50"])[0])
            matching = sorted(
                (
                    o
                    for o in self.orders.values()
                    if not since or datetime.fromisoformat(o["updated_at"]) >= datetime.fromisoformat(since)
                ),
                key=lambda o: (o["updated_at"], o["id"]),
            )
            page = matching[offset : offset + limit]
            headers: dict[str, str] = {}
            if offset + limit < len(matching):
                token = base64.urlsafe_b64encode(
                    json.dumps({"since": since, "offset": offset + limit}).encode()
                ).decode()
                host = self.next_host or f"127.0.0.1:{self.port}"
                headers["Link"] = f'<http://{host}{PATH}?limit={limit}&page_info={token}>; rel="next"'
                if self.duplicate_boundary and page:
                    page = [*page, matching[offset + limit]]  # the next page's first order, twice
            body = {"orders": json.loads(json.dumps(page))}
        _send(request, 200, body, headers)


def _send(request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        request.send_header(key, value)
    request.end_headers()
    request.wfile.write(data)
