"""The status page in a real headless Chromium (Debian's), driven with Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.desktop import artifacts_dir
from tests.support.helpers import AgentProcess, drop, enable_api, free_port, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
API_TOKEN = "page-test-api-token-4567"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_page_shows_each_state_and_a_retry_reaches_the_agent(
    tmp_path: Path, sandbox: SandboxServer, token: str, browser: Any
) -> None:
    config = write_config(tmp_path, sandbox.url)
    url = enable_api(config, free_port())
    env = {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN}
    agent = AgentProcess(config, env).start()
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    admin = {"Authorization": f"Bearer {token}"}
    shots = artifacts_dir()
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(url) else None)
    try:
        wait_for(lambda: _ok(api), what="local API up")
        # Without a session the page asks for the token; a wrong one is refused in words.
        page.goto(url + "/")
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#token", "not-the-token")
        page.click("#login-form button")
        page.wait_for_selector("#login-error:has-text('not this agent')")
        page.fill("#token", API_TOKEN)
        page.click("#login-form button")
        page.wait_for_selector("#banner[data-state=green]")
        page.screenshot(path=str(shots / "status-page-green.png"), full_page=True)

        # Amber: paused from the page.
        page.click("#pause")
        page.wait_for_selector("#banner[data-state=amber]")
        assert "paused" in page.inner_text("#reasons")
        page.screenshot(path=str(shots / "status-page-amber.png"), full_page=True)
        page.click("#pause")
        page.wait_for_selector("#banner[data-state=green]")

        # Red: the WMS refuses movements for a closed location; they wait with the WMS's words.
        httpx.post(f"{sandbox.url}/_sandbox/faults", json={"closed_locations": ["S001"]}, headers=admin)
        export = tmp_path / "two-lines.csv"
        export.write_text(
            "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\n"
            "P1,1,2026-11-20T09:00:00-06:00,R2,SALE,SKU-1001,1,EA,1,\n"
            "P1,2,2026-11-20T09:00:00-06:00,R2,SALE,SKU-2001,1,EA,1,\n"
        )
        drop(tmp_path / "inbox", export)
        page.wait_for_selector("#banner[data-state=red]", timeout=30_000)
        page.wait_for_selector(".exception >> nth=1")
        text = page.inner_text("#exception-list")
        assert "location 'S001' is closed for movements" in text and "transaction P1, line 1" in text
        page.screenshot(path=str(shots / "status-page-red.png"), full_page=True)

        # The location reopens; Retry on the page sends the movement again.
        httpx.post(f"{sandbox.url}/_sandbox/faults", json={"closed_locations": []}, headers=admin)
        first = page.locator(".exception").nth(0)
        first.locator("button[data-action=retry]").click()
        wait_for(lambda: sandbox.ledger.stats()["applied"] == 1, what="the retried movement at the WMS")
        second = page.locator(".exception").nth(0)
        second.locator("button[data-action=resolve]").click()
        page.wait_for_selector("#banner[data-state=green]", timeout=30_000)
        resolved = api.get("/api/v1/exceptions", params={"all": "true"}).json()
        assert sorted(e["resolution"] for e in resolved) == ["resolved on the status page", "sent again by an operator"]

        # Grey: the agent stops; the page says so and recovers by itself.
        agent.stop()
        page.wait_for_selector("#banner[data-state=grey]", timeout=30_000)
        page.screenshot(path=str(shots / "status-page-grey.png"), full_page=True)
        agent = AgentProcess(config, env).start()
        page.wait_for_selector("#banner:not([data-state=grey])", timeout=30_000)
        assert outside == [], f"the page fetched something from elsewhere: {outside}"
    finally:
        context.close()
        agent.stop()
        api.close()


def test_one_time_link_signs_in_once(tmp_path: Path, sandbox: SandboxServer, token: str, browser: Any) -> None:
    config = write_config(tmp_path, sandbox.url)
    url = enable_api(config, free_port())
    agent = AgentProcess(config, {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN}).start()
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    try:
        wait_for(lambda: _ok(api), what="local API up")
        link = api.post("/api/v1/login-code").json()["url"]
        first = browser.new_context()
        page = first.new_page()
        page.goto(link)
        page.wait_for_selector("#banner[data-state=green]")
        first.close()
        second = browser.new_context()
        page = second.new_page()
        page.goto(link)
        page.wait_for_selector("#login:not([hidden])")
        assert "expired" in page.inner_text("#login-error")
        second.close()
    finally:
        agent.stop()
        api.close()


def _ok(api: httpx.Client) -> bool:
    try:
        return api.get("/api/v1/status").status_code == 200
    except httpx.HTTPError:
        return False
