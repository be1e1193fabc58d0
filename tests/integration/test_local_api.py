"""The local API over a real socket, in front of a real in-process agent and the sandbox WMS."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.api.openapi import render
from agent.config import load_config
from agent.runtime import Agent
from tests.support.helpers import drop, enable_api, free_port, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

API_TOKEN = "local-api-test-token-89"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def running(
    tmp_path: Path, sandbox: SandboxServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Agent, str]]:
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", token)
    monkeypatch.setenv("POSSYNC_API_TOKEN", API_TOKEN)
    config = write_config(tmp_path, sandbox.url)
    url = enable_api(config, free_port())
    text = config.read_text().replace(
        "api_port", 'api_allowed_hosts = ["backoffice-pc"]\napi_max_body_kb = 4\napi_port', 1
    )
    config.write_text(text)
    agent = Agent(load_config(config))
    agent.start()
    try:
        yield agent, url
    finally:
        agent.stop()


def bearer(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_needs_the_token(running: tuple[Agent, str]) -> None:
    _, url = running
    for method, path in [
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/exceptions"),
        ("GET", "/api/v1/history"),
        ("POST", "/api/v1/pause"),
        ("POST", "/api/v1/sync-now"),
        ("POST", "/api/v1/login-code"),
    ]:
        assert httpx.request(method, url + path).status_code == 401, path
        assert httpx.request(method, url + path, headers=bearer("wrong-token-000000")).status_code == 401, path
    assert httpx.get(url + "/api/v1/status", headers=bearer()).status_code == 200


def test_binds_to_loopback_only_by_default(running: tuple[Agent, str]) -> None:
    agent, _ = running
    assert agent.api is not None and agent.api.host == "127.0.0.1"
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None) if a[0] == socket.AF_INET} - {
        "127.0.0.1",
        "127.0.1.1",
    }
    for address in addresses:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{address}:{agent.api.port}/api/v1/status", timeout=2)


def test_foreign_host_header_is_refused(running: tuple[Agent, str]) -> None:
    _, url = running
    assert httpx.get(url + "/api/v1/status", headers={**bearer(), "Host": "attacker.example"}).status_code == 400
    assert httpx.get(url + "/api/v1/status", headers={**bearer(), "Host": "localhost"}).status_code == 200
    assert httpx.get(url + "/api/v1/status", headers={**bearer(), "Host": "backoffice-pc:8765"}).status_code == 200


def test_oversize_bodies_are_refused(running: tuple[Agent, str]) -> None:
    _, url = running
    response = httpx.post(url + "/api/v1/login", content=b'{"token": "' + b"x" * 10_000 + b'"}')
    assert response.status_code == 413 and response.json()["code"] == "TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(10):
            yield b"x" * 1024

    assert httpx.post(url + "/api/v1/login", content=chunks()).status_code == 413


def test_status_actions_and_history(running: tuple[Agent, str]) -> None:
    agent, url = running
    status = httpx.get(url + "/api/v1/status", headers=bearer()).json()
    for key in (
        "state",
        "pending",
        "in_flight",
        "oldest_pending_age_s",
        "sla_s",
        "last_sync_at",
        "wms_reachable",
        "wms_latency_ms",
        "sources",
        "exceptions_open",
        "disk_free_mb",
        "version",
        "api_url",
    ):
        assert key in status
    assert status["api_url"] == url
    assert httpx.post(url + "/api/v1/pause", headers=bearer()).json()["message"].startswith("delivery paused")
    assert agent.status()["paused"] is True and agent.status()["state"] == "amber"
    httpx.post(url + "/api/v1/resume", headers=bearer())
    assert agent.status()["paused"] is False
    assert httpx.post(url + "/api/v1/sync-now", headers=bearer()).json()["ok"] is True
    agent._sample_history()
    assert httpx.get(url + "/api/v1/history", headers=bearer()).json()[-1].keys() == {
        "at",
        "pending",
        "delivered",
        "captured",
    }


def test_exceptions_retry_and_resolve(
    running: tuple[Agent, str], sandbox: SandboxServer, token: str, tmp_path: Path
) -> None:
    agent, url = running
    export = tmp_path / "bad.csv"
    export.write_text(
        "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\nX9,1,2026-11-20T09:00:00-06:00,R2,SALE,NO-SUCH,1,EA,1,\nX9,2,2026-11-20T09:00:00-06:00,R2,SALE,SKU-1001,lots,EA,1,\n"
    )
    drop(tmp_path / "inbox", export)
    items = wait_for(
        lambda: len(x := httpx.get(url + "/api/v1/exceptions", headers=bearer()).json()) == 2 and x,
        what="two exceptions",
    )
    unknown = next(e for e in items if e["code"] == "UNKNOWN_ITEM")
    unreadable = next(e for e in items if e["code"] == "BAD_NUMBER")
    refused = httpx.post(f"{url}/api/v1/exceptions/{unknown['id']}/retry", headers=bearer())
    assert refused.status_code == 409 and "still not mappable" in refused.json()["message"]
    httpx.post(
        f"{sandbox.url}/_sandbox/items",
        json=[{"sku": "SKU-NEW", "aliases": ["NO-SUCH"]}],
        headers={"Authorization": f"Bearer {token}"},
    )
    agent.refresh_item_master()  # what the schedule does
    assert [e["id"] for e in httpx.get(url + "/api/v1/exceptions", headers=bearer()).json()] == [unreadable["id"]]
    done = httpx.post(
        f"{url}/api/v1/exceptions/{unreadable['id']}/resolve", json={"note": "re-keyed"}, headers=bearer()
    )
    assert done.status_code == 200 and done.json()["message"].startswith(f"exception {unreadable['id']} resolved")
    assert httpx.post(f"{url}/api/v1/exceptions/99999/retry", headers=bearer()).status_code == 404
    wait_for(lambda: sandbox.ledger.stats()["applied"] == 1, what="held line delivered after the item master learnt it")
    assert httpx.get(url + "/api/v1/exceptions", headers=bearer()).json() == []


def test_session_cookie_needs_the_csrf_header_to_change_anything(running: tuple[Agent, str]) -> None:
    _, url = running
    browser = httpx.Client(base_url=url)
    assert browser.post("/api/v1/login", json={"token": "nope"}).status_code == 401
    login = browser.post("/api/v1/login", json={"token": API_TOKEN})
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and API_TOKEN.lower() not in cookie
    assert browser.get("/api/v1/status").status_code == 200
    assert browser.post("/api/v1/pause").status_code == 403
    assert browser.post("/api/v1/pause", headers={"X-Possync-Request": "1"}).status_code == 200
    browser.post("/api/v1/resume", headers={"X-Possync-Request": "1"})
    browser.post("/api/v1/logout", headers={"X-Possync-Request": "1"})
    assert browser.get("/api/v1/status").status_code == 401
    browser.close()


def test_page_and_assets_ship_inside_the_package(running: tuple[Agent, str]) -> None:
    _, url = running
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("status.js", "status.css"):
        asset = httpx.get(f"{url}/static/{name}")
        assert asset.status_code == 200
        assert "http://" not in asset.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in asset.text
    assert httpx.get(url + "/static/../config.py").status_code == 404
    assert httpx.get(url + "/static/secrets.py").status_code == 404


def test_openapi_document_is_served_and_committed(running: tuple[Agent, str]) -> None:
    _, url = running
    assert httpx.get(url + "/api/v1/openapi.json").status_code == 401
    served = httpx.get(url + "/api/v1/openapi.json", headers=bearer()).json()
    assert "/api/v1/status" in served["paths"]
    committed = json.loads((ROOT / "docs" / "local-api.openapi.json").read_text())
    assert committed == json.loads(render()), "regenerate: python -m agent.api.openapi > docs/local-api.openapi.json"


def test_api_disabled_without_a_token(
    tmp_path: Path, sandbox: SandboxServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", token)
    agent = Agent(load_config(write_config(tmp_path, sandbox.url)))
    agent.start()
    try:
        assert agent.api is None and agent.status()["api_url"] is None
    finally:
        agent.stop()


def test_stock_routes_need_the_token_and_answer_by_sku_or_barcode(
    running: tuple[Agent, str], sandbox: SandboxServer
) -> None:
    agent, url = running
    for method, path in [("GET", "/api/v1/stock"), ("POST", "/api/v1/stock/refresh")]:
        assert httpx.request(method, url + path).status_code == 401, path
    refreshed = httpx.post(url + "/api/v1/stock/refresh", headers=bearer())
    assert refreshed.status_code == 200 and refreshed.json()["ok"] is True
    opening = {r["sku"]: r["on_hand"] for r in sandbox.ledger.all_stock() if r["location"] == "S001"}
    records = httpx.get(url + "/api/v1/stock", headers=bearer()).json()
    assert {r["sku"]: r["effective_on_hand"] for r in records if r["location"] == "S001"} == opening
    item = next(i for i in agent.item_cache.load() if i.barcodes)
    by_barcode = httpx.get(url + "/api/v1/stock", params={"sku": item.barcodes[0]}, headers=bearer()).json()
    assert [r["sku"] for r in by_barcode] == [item.sku] * len(by_barcode) and by_barcode
    [first] = httpx.get(url + "/api/v1/stock", params={"limit": 1}, headers=bearer()).json()
    assert (first["sku"], first["location"]) == (records[0]["sku"], records[0]["location"])
    missing = httpx.get(url + "/api/v1/stock", params={"sku": "NO-SUCH-ITEM"}, headers=bearer())
    assert missing.status_code == 404 and "NO-SUCH-ITEM" in missing.json()["message"]
