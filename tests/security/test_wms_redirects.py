"""The WMS credentials go to the configured WMS and nowhere else, redirects included.

A real HTTP server on 127.0.0.1 plays the configured WMS and answers every request with a redirect
(301, 302, 303, 307, 308) to a second real server on another port, which records every request it
receives (headers and body). Every WMS client kind is driven through every call it makes (push,
item master, stock snapshot, ping). The second server must never see the token or password: in
fact it must see no request at all, since possync never follows a redirect.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.kinds import load_kinds
from agent.secrets import resolve_secret
from pos_adapters.transactions import parse_transactions
from tests.fuzz._support import context
from wms_client.base import REGISTRY

SECRET = "wms-secret-never-elsewhere-6a9c"
SETTINGS: dict[str, dict[str, Any]] = {
    "possync": {"token": "env:POSSYNC_REDIRECT_SECRET"},
    "inventree": {"token": "env:POSSYNC_REDIRECT_SECRET", "location": "S001"},
    "tryton": {
        "database": "db",
        "user": "possync",
        "password": "env:POSSYNC_REDIRECT_SECRET",
        "warehouse": "WH",
        "customer": "POS",
    },
}


class Server:
    """A real HTTP server on 127.0.0.1 whose handler is ``respond(handler, body)``."""

    def __init__(self, respond: Any) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                respond(self, body)

            do_GET = do_POST = do_PUT = do_PATCH = handle_any  # noqa: N815

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        del server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    holder: list[Server] = []

    def record(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        holder[0].seen.append((handler.command, handler.path, dict(handler.headers.items()), body))
        send(
            handler,
            200,
            b'{"results": [], "result": null, "items": [], "results_count": 0}',
            {"Content-Type": "application/json"},
        )

    server = Server(record)
    holder.append(server)
    yield server
    server.stop()


def movement() -> Any:
    doc = {
        "transaction_id": "R-1",
        "occurred_at": "2026-11-20T09:00:00",
        "kind": "sale",
        "lines": [{"item": "SKU-1001", "quantity": 1}],
    }
    (parsed,) = parse_transactions(doc, context(Path()), source="t", source_ref="t").movements
    fields = {f.name for f in dataclasses.fields(parsed)}
    return dataclasses.replace(parsed, sku="SKU-1001") if "sku" in fields else parsed


@pytest.mark.parametrize("kind", sorted(SETTINGS))
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_wms_secret_never_follows_a_redirect(
    kind: str, status: int, elsewhere: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSSYNC_REDIRECT_SECRET", SECRET)

    def redirect(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        send(handler, status, b"", {"Location": f"{elsewhere.url}{handler.path}"})

    wms = Server(redirect)
    try:
        load_kinds()
        assert set(SETTINGS) == set(REGISTRY), "a WMS kind is not covered here: add its settings to SETTINGS"
        spec = REGISTRY[kind]
        settings = spec.settings.model_validate({"kind": kind, "url": wms.url, "timeout_s": 2, **SETTINGS[kind]})
        client = spec.build(settings, "S001", resolve_secret)
        calls = [lambda: client.push([movement()]), client.item_master, client.stock_snapshot, client.ping]
        outcomes = []
        for call in calls:
            try:
                outcomes.append(call())
            except Exception as exc:  # the client may refuse by raising; only where the secret went matters
                outcomes.append(exc)
        client.close()
    finally:
        wms.stop()
    leaked = [(m, p) for m, p, headers, body in elsewhere.seen if SECRET in str(headers) or SECRET.encode() in body]
    assert not leaked, f"{kind} sent the WMS secret to another host after a {status}: {leaked}"
    assert elsewhere.seen == [], f"{kind} followed a {status} redirect: {[(m, p) for m, p, _, _ in elsewhere.seen]}"
    report = outcomes[0]
    if hasattr(report, "results"):  # a push that was redirected delivers nothing and says why
        assert not any(r.outcome.value in ("accepted", "duplicate") for r in report.results)
