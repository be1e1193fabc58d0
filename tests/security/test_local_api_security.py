"""The local API's walls, against a real in-process agent over real sockets.

Routes are enumerated from the running FastAPI app, so a route added later is covered without
editing this file: every route needs the token except the five the status page's sign-in needs,
and those serve nothing about the store. Foreign ``Host`` headers (DNS rebinding) are refused on
every route, the default bind is loopback, and request bodies are bounded.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from agent.config import AgentSettings, load_config
from agent.runtime import Agent
from tests.support.helpers import enable_api, free_port, write_config
from wms_client.sandbox.server import SandboxServer

API_TOKEN = "security-api-token-5b1e"
PUBLIC = {
    ("POST", "/api/v1/login"),  # exchanges the token for a session cookie
    ("POST", "/api/v1/logout"),  # forgets the caller's own session
    ("GET", "/login"),  # redeems a one-time code minted with the token
    ("GET", "/"),  # the page shell: it loads its data from the guarded API
    ("GET", "/static/{name}"),  # the page's script and style sheet
}
INGEST = """
[[sources]]
name = "pos-api"
kind = "http_ingest"
"""


@pytest.fixture
def running(
    tmp_path: Path, sandbox: SandboxServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Agent, str]]:
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", token)
    monkeypatch.setenv("POSSYNC_API_TOKEN", API_TOKEN)
    config = write_config(tmp_path, sandbox.url, sources=INGEST)
    url = enable_api(config, free_port())
    agent = Agent(load_config(config))
    agent.start()
    try:
        yield agent, url
    finally:
        agent.stop()


def flatten(entries: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through FastAPI's included (lazily merged) routers."""
    for entry in entries:
        if isinstance(entry, APIRoute):
            yield from ((m, prefix + entry.path) for m in sorted(entry.methods))
        elif hasattr(entry, "original_router"):  # fastapi >= 0.160: an included router, kept as is
            yield from flatten(entry.original_router.routes, prefix + entry.include_context.prefix)
        elif hasattr(entry, "path") and hasattr(entry, "methods"):
            yield from ((m, prefix + entry.path) for m in sorted(entry.methods or ()))


def routes(agent: Agent) -> list[tuple[str, str]]:
    assert agent.api_app is not None
    found = list(flatten(agent.api_app.routes))
    assert ("POST", "/api/v1/transactions") in found and ("GET", "/api/v1/status") in found
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "status.js" if m.group(0) == "{name}" else "1", path)


def test_every_route_but_the_sign_in_ones_refuses_requests_without_the_token(running: tuple[Agent, str]) -> None:
    agent, url = running
    found = routes(agent)
    assert set(found) >= PUBLIC, "a public route is gone: update PUBLIC"
    guarded = [r for r in found if r not in PUBLIC]
    assert len(guarded) >= 10
    for method, path in guarded:
        target = url + concrete(path)
        for headers in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": API_TOKEN}):
            answer = httpx.request(method, target, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers, answer.status_code)
            assert '"store_id"' not in answer.text
    for method, path in PUBLIC:
        answer = httpx.request(method, url + concrete(path), json={"token": "wrong"}, follow_redirects=False)
        assert answer.status_code in (200, 303, 401, 422), (method, path, answer.status_code)
        assert '"store_id"' not in answer.text and agent.config.wms.url not in answer.text


def test_the_api_binds_to_loopback_by_default(running: tuple[Agent, str]) -> None:
    agent, _ = running
    assert AgentSettings.model_fields["api_bind"].default == "127.0.0.1"
    assert agent.api is not None
    listening = agent.api._server.servers[0].sockets[0].getsockname()
    assert listening[0] == "127.0.0.1"


FOREIGN_HOSTS = [
    "attacker.example",
    "127.0.0.1.attacker.example",
    "localhost.evil.test",
    "10.0.0.5",
    "[::2]",
    "0.0.0.0",
]


def test_foreign_host_headers_are_refused_on_every_route(running: tuple[Agent, str]) -> None:
    agent, url = running
    port = url.rsplit(":", 1)[1]
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    for method, path in routes(agent):
        for host in FOREIGN_HOSTS:
            answer = httpx.request(method, url + concrete(path), headers={**auth, "Host": f"{host}:{port}"}, json={})
            assert answer.status_code == 400, (method, path, host, answer.status_code)
            assert '"store_id"' not in answer.text
    assert httpx.get(url + "/api/v1/status", headers={**auth, "Host": f"localhost:{port}"}).status_code == 200
    # HTTP/1.0 allows leaving Host out; a request without one is refused too.
    with socket.create_connection(("127.0.0.1", int(port))) as sock:
        sock.sendall(f"GET /api/v1/status HTTP/1.0\r\nAuthorization: Bearer {API_TOKEN}\r\n\r\n".encode())
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:40]


def test_request_bodies_over_the_limit_are_refused_before_they_are_stored(running: tuple[Agent, str]) -> None:
    agent, url = running
    auth = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    limit = agent.config.agent.api_max_body_kb * 1024
    line = '{"item": "SKU-1001", "quantity": 1},'
    body = '{"transaction_id": "BIG-1", "occurred_at": "2026-11-20T09:00:00", "kind": "sale", "lines": ['
    body += line * (limit // len(line) + 10) + '{"item": "SKU-1001", "quantity": 1}]}'
    answer = httpx.post(url + "/api/v1/transactions", content=body, headers=auth, timeout=30)
    assert answer.status_code == 413 and answer.json()["code"] == "TOO_LARGE"

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        data = body.encode()
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    assert httpx.post(url + "/api/v1/transactions", content=streamed(), headers=auth, timeout=30).status_code == 413
    assert agent.outbox.movements_of("BIG-1") == []
