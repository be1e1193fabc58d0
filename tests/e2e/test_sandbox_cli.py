"""``possync sandbox`` as IT and the demo start it: a real process, its flags, its ledger folder, its token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import free_port

TOKEN = "sandbox-cli-token-0123456789"


@dataclass
class Sandbox:
    proc: subprocess.Popen[str]
    url: str
    banner: str

    def client(self, token: str = TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def start(tmp_path: Path, *flags: str) -> Sandbox:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sandbox", "--port", "0", "--data", str(tmp_path / "ledger"), *flags],
        env={**os.environ, "SANDBOX_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if match := re.search(r"listening on (http://\S+)", line):
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return Sandbox(proc, match.group(1), line)
    proc.wait(timeout=10)
    raise AssertionError("sandbox did not start: " + "".join(seen))


@pytest.fixture
def sandboxes() -> Iterator[list[Sandbox]]:
    started: list[Sandbox] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=10)


def event(n: int, sku: str = "SKU-1001", quantity: str = "1") -> dict[str, object]:
    return {
        "event_id": f"cli-{n}",
        "store_id": "S001",
        "terminal_id": "R1",
        "pos_transaction_id": f"T{n}",
        "line_no": 1,
        "business_day": "2026-11-20",
        "occurred_at": "2026-11-20T12:00:00+00:00",
        "kind": "sale",
        "sku": sku,
        "quantity": quantity,
        "unit": "EA",
        "location": "S001",
    }


def test_sandbox_serves_its_items_applies_once_and_keeps_the_ledger_across_restarts(
    tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    items = tmp_path / "items.csv"
    items.write_text(
        "sku,description,barcodes,base_unit,case_qty,location,on_hand\nSKU-1001,Boot,0012345678905,EA,1,S001,10\n"
    )
    s = start(tmp_path, "--items", str(items), "--token", "env:SANDBOX_TOKEN")
    sandboxes.append(s)
    assert s.url.startswith("http://127.0.0.1:"), "bound to loopback unless told otherwise"
    assert httpx.get(f"{s.url}/v1/health").status_code == 401
    assert httpx.get(f"{s.url}/v1/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with s.client() as http:
        skus = [i["sku"] for i in http.get("/v1/items").json()["items"]]
        assert skus == ["SKU-1001"]
        batch = {"events": [event(1), event(2, sku="SKU-9999"), event(3, quantity="-2")]}
        statuses = [r["status"] for r in http.post("/v1/stores/S001/movements", json=batch).json()["results"]]
        assert statuses == ["accepted", "rejected", "rejected"]
        again = http.post("/v1/stores/S001/movements", json={"events": [event(1)]}).json()["results"]
        assert again[0]["status"] == "duplicate"
        stock = http.get("/v1/stores/S001/stock").json()["items"]
        assert [(r["sku"], r["on_hand"]) for r in stock if r["location"] == "S001"] == [("SKU-1001", "9")]
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=10) == 0

    restarted = start(tmp_path, "--items", str(items), "--token", TOKEN)
    sandboxes.append(restarted)
    with restarted.client() as http:
        assert http.post("/v1/stores/S001/movements", json={"events": [event(1)]}).json()["results"][0]["status"] == (
            "duplicate"
        ), "the ledger folder survives a restart"


def test_fault_switches_on_the_command_line(tmp_path: Path, sandboxes: list[Sandbox]) -> None:
    s = start(tmp_path, "--token", TOKEN, "--throttle-rate", "1", "--retry-after", "7")
    sandboxes.append(s)
    with s.client() as http:
        answer = http.post("/v1/stores/S001/movements", json={"events": [event(1)]})
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    s.proc.terminate()
    assert s.proc.wait(timeout=10) == 0

    failing = start(tmp_path, "--token", TOKEN, "--error-rate", "1")
    sandboxes.append(failing)
    with failing.client() as http:
        assert http.post("/v1/stores/S001/movements", json={"events": [event(2)]}).status_code == 503


def test_refuse_for_refuses_connections_then_listens(tmp_path: Path, sandboxes: list[Sandbox]) -> None:
    port = free_port()
    flags = ["--port", str(port), "--data", str(tmp_path / "l"), "--token", TOKEN, "--refuse-for", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sandbox", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    sandboxes.append(Sandbox(proc, f"http://127.0.0.1:{port}", ""))
    assert "refusing connections for 2 s" in proc.stdout.readline()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
    assert "listening on" in proc.stdout.readline()
    answer = httpx.get(f"http://127.0.0.1:{port}/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.json()["status"] == "ok"


def test_a_token_that_cannot_be_resolved_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "sandbox", "--port", "0", "--token", "env:POSSYNC_NOT_SET_ANYWHERE"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "POSSYNC_NOT_SET_ANYWHERE"},
        check=False,
    )
    assert result.returncode == 2 and "POSSYNC_NOT_SET_ANYWHERE" in result.stderr
