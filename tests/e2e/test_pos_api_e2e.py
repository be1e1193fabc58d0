"""End to end: POS pushes (http_ingest) and POS polling (rest_poll) through a real agent process."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_pos import FakeShopify
from tests.support.helpers import (
    AgentProcess,
    enable_api,
    free_port,
    ledger_totals,
    status_json,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
API_TOKEN = "pos-push-api-token-0001"
SKUS = ["SKU-1001", "SKU-1002", "SKU-1003", "SKU-2001", "SKU-2002", "SKU-4001", "SKU-4002", "SKU-5001"]
INGEST = """
[[sources]]
name = "register-push"
kind = "http_ingest"
"""


def transaction(txn: str, n: int) -> dict[str, Any]:
    lines = [
        {"line_no": i + 1, "item": SKUS[(n + i) % len(SKUS)], "quantity": "1", "unit_price": "9.99"}
        for i in range(1 + n % 2)
    ]
    return {
        "transaction_id": txn,
        "terminal_id": "R9",
        "occurred_at": "2026-11-20T10:00:00-06:00",
        "kind": "sale",
        "lines": lines,
    }


def expected(txns: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: Counter[str] = Counter()
    for txn in txns:
        for line in txn["lines"]:
            totals[line["item"]] -= 1
    return {k: Decimal(v) for k, v in totals.items()}


def start_agent(
    tmp_path: Path, sandbox: SandboxServer, token: str, sources: str = INGEST, **kw: Any
) -> tuple[AgentProcess, str, dict[str, str]]:
    config = write_config(tmp_path, sandbox.url, sources=sources, **kw)
    url = enable_api(config, free_port())
    config.write_text(config.read_text().replace("api_port", "api_max_body_kb = 256\napi_port", 1))
    env = {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN, "SHOP_TOKEN": "shpat_e2e_0123456789"}
    agent = AgentProcess(config, env).start()
    wait_for(lambda: _up(url), what="agent's local API up")
    return agent, url, env


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    except httpx.HTTPError:
        return False


def test_ten_thousand_concurrent_pushes_reach_the_wms_once(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    agent, url, _ = start_agent(tmp_path, sandbox, token, batch_size=500)
    txns = [transaction(f"P{n:05d}", n) for n in range(10_000)]
    local = threading.local()

    def push(txn: dict[str, Any]) -> int:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=60)
        return local.http.post("/api/v1/transactions", json=txn).status_code

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = Counter(pool.map(push, txns))
        assert codes == {202: 10_000}
        lines = sum(len(t["lines"]) for t in txns)
        wait_for(lambda: sandbox.ledger.stats()["applied"] == lines, timeout=120, what="every line at the WMS")
        rows = sandbox.ledger.ledger_rows(0, 100_000)
        assert len({r["event_id"] for r in rows}) == len(rows) == lines
        assert ledger_totals(rows) == expected(txns)
    finally:
        agent.stop()


def test_sigkill_mid_stream_loses_nothing_that_got_a_202(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    agent, url, env = start_agent(tmp_path, sandbox, token)
    accepted: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(1_000_000))

    def pos_terminal() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10) as http:
            while not stop.is_set():
                with lock:
                    txn = transaction(f"K{next(counter):06d}", len(accepted))
                try:
                    if http.post("/api/v1/transactions", json=txn).status_code == 202:
                        with lock:
                            accepted.append(txn)
                except httpx.HTTPError:
                    time.sleep(0.05)  # the agent is down: a real POS keeps the sale and tries again later

    terminals = [threading.Thread(target=pos_terminal) for _ in range(4)]
    for t in terminals:
        t.start()
    rng = random.Random(5)
    try:
        for _ in range(3):
            time.sleep(rng.uniform(0.8, 1.6))
            agent.kill()
            agent = AgentProcess(agent.config, env).start()
            wait_for(lambda: _up(url), what="agent back")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in terminals:
            t.join()
    try:
        assert len(accepted) > 100
        # Wait for the accepted transactions themselves: a count is reached early by transactions that
        # were stored but whose 202 a kill cut off (they reach the WMS too, and may be counted first).
        wanted = {t["transaction_id"] for t in accepted}

        def missing() -> set[str]:
            return wanted - {r["pos_transaction_id"] for r in sandbox.ledger.ledger_rows(0, 100_000)}

        wait_for(lambda: not missing(), timeout=60, interval=0.2, what="every transaction that got a 202 at the WMS")
        rows = sandbox.ledger.ledger_rows(0, 100_000)
        assert len({r["event_id"] for r in rows}) == len(rows)
    finally:
        agent.stop()


def test_what_the_pos_is_told_for_every_kind_of_request(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    agent, url, env = start_agent(tmp_path, sandbox, token)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    try:
        good = transaction("G1", 1)
        first = http.post("/api/v1/transactions", json={"transactions": [good]})
        assert first.status_code == 202
        ids = first.json()["event_ids"]
        again = http.post("/api/v1/transactions", json=good).json()
        assert again["event_ids"] == ids and again["transactions"][0]["duplicate"] == ids

        unknown = {**transaction("G2", 0), "lines": [{"item": "4006381333931", "quantity": 1}]}
        held = http.post("/api/v1/transactions", json=unknown)
        assert held.status_code == 202 and held.json()["transactions"][0]["held"] == held.json()["event_ids"]

        broken = {
            "transactions": [
                good,
                {
                    **transaction("G3", 1),
                    "lines": [{"item": "SKU-1001", "quantity": "two"}],
                    "occurred_at": "yesterday",
                },
            ]
        }
        refused = http.post("/api/v1/transactions", json=broken)
        assert refused.status_code == 422
        paths = {e["path"] for e in refused.json()["errors"]}
        assert {"transactions[1].lines[0].quantity", "transactions[1].occurred_at"} <= paths

        assert http.post("/api/v1/transactions", content=b"{not json").status_code == 400
        assert http.post("/api/v1/transactions", json=[1, 2]).status_code == 422
        huge = {"transactions": [transaction(f"H{n}", n) for n in range(3000)]}
        assert http.post("/api/v1/transactions", json=huge).status_code == 413
        assert httpx.post(url + "/api/v1/transactions", json=good).status_code == 401
        assert (
            httpx.post(
                url + "/api/v1/transactions", json=good, headers={"Authorization": "Bearer nope-nope-nope"}
            ).status_code
            == 401
        )

        wait_for(lambda: sandbox.ledger.stats()["applied"] == 2, what="G1 delivered once")
        status = wait_for(lambda: (s := status_json(agent.config, env))["held"] == 1 and s, what="G2 held")
        assert status["exceptions_open"] == 1 and "G3" not in str(sandbox.ledger.ledger_rows())
    finally:
        http.close()
        agent.stop()


SHOP = """
[[sources]]
name = "webshop"
kind = "rest_poll"
url = "{url}"
preset = "shopify-orders"
every = "1s"
page_size = 2
overlap = "2m"
initial_lookback = "30d"
auth = {{ type = "header", header = "X-Shopify-Access-Token", token = "env:SHOP_TOKEN" }}
"""


def test_rest_poll_resumes_from_its_stored_cursor_without_gaps_or_duplicates(
    tmp_path: Path, sandbox: SandboxServer, token: str
) -> None:
    shop = FakeShopify("shpat_e2e_0123456789").start()
    try:
        for n in range(1, 6):
            shop.add_order(n, [(n * 10, SKUS[n % 4], 1, "5.00")])
        agent, _, env = start_agent(tmp_path, sandbox, token, sources=SHOP.format(url=shop.url))
        wait_for(lambda: sandbox.ledger.stats()["applied"] == 5, what="first orders delivered")
        agent.kill()
        polls_before = len(shop.requests)
        shop.refund(3, 300, [(301, 30, 1, "return")])
        shop.cancel(4)
        for n in range(6, 9):
            shop.add_order(n, [(n * 10, SKUS[n % 4], 2, "5.00")])
        agent = AgentProcess(agent.config, env).start()
        wait_for(lambda: sandbox.ledger.stats()["applied"] == 5 + 1 + 1 + 3, timeout=30, what="the rest delivered")
        time.sleep(2.5)  # a few more polls: nothing new may appear
        rows = sandbox.ledger.ledger_rows(0, 10_000)
        assert len(rows) == 10 and len({r["event_id"] for r in rows}) == 10
        want: Counter[str] = Counter()
        for n in (1, 2, 3, 5):
            want[SKUS[n % 4]] -= 1
        want[SKUS[3 % 4]] += 1  # refund of order 3
        for n in (6, 7, 8):
            want[SKUS[n % 4]] -= 2
        assert ledger_totals(rows) == {k: Decimal(v) for k, v in want.items() if v}
        first_after_restart = shop.requests[polls_before]
        assert first_after_restart["updated_at_min"][0] > "2026-11-20T15:00", (
            "resumed from the stored mark, not from the lookback"
        )
        agent.stop()
    finally:
        shop.stop()
