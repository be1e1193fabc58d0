"""Backlog drain: movements/s delivered from the outbox to the sandbox WMS, beside a bare httpx loop.

- possync: the product's ``DeliveryLoop`` (claim with read-ahead, ``PossyncWmsClient.push``, acks
  recorded in the outbox) over a backlog enqueued beforehand, to a sandbox WMS in its own process;
- limit: one ``httpx.Client`` posting the same batches as pre-encoded request bodies to the same
  endpoint with the same token, to a fresh sandbox, nothing recorded anywhere.
Both end only when the sandbox has applied every movement.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from agent.delivery import DeliveryLoop
from agent.domain import Movement
from agent.live import LiveState
from bench.common import STORE, WMS_TOKEN, Sandbox, movements, start_sandbox
from outbox.backoff import Backoff
from outbox.queue import Outbox
from outbox.state import AgentState
from wms_client.possync_http import PossyncWmsClient, PossyncWmsSettings

CHUNK = 2000  # movements per enqueue while building the backlog (one file chunk)


def possync_rate(n: int, batch_size: int) -> float:
    """Return movements/s of the delivery loop draining an ``n``-movement backlog in batches of ``batch_size``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sandbox = start_sandbox(folder / "wms")
        try:
            box = _backlog(folder / "outbox.sqlite", movements(n, f"D{batch_size}"))
            elapsed = _drain(box, sandbox.url, batch_size)
            box.close()
            _check_applied(sandbox, n)
        finally:
            sandbox.stop()
    return n / elapsed


def _backlog(path: Path, items: list[Movement]) -> Outbox:
    """Return a fresh outbox holding ``items`` as ready movements."""
    box = Outbox.open_file(path)
    for i in range(0, len(items), CHUNK):
        box.enqueue(items[i : i + CHUNK], source="bench")
    return box


def _drain(box: Outbox, url: str, batch_size: int) -> float:
    """Run the delivery loop until nothing is pending; return the seconds it took."""
    settings = PossyncWmsSettings(url=url, token="env:UNUSED", timeout_s=30, batch_size=batch_size)
    client = PossyncWmsClient(settings, STORE, lambda _ref: WMS_TOKEN)
    loop = DeliveryLoop(box, client, LiveState(AgentState(box.db), "bench"), batch_size=batch_size, backoff=Backoff())
    started = time.perf_counter()
    while True:
        wait = loop.step()
        if wait == 0:  # a batch went: go on (no outbox count per batch, which would cost as much as a claim)
            continue
        if not box.counts().pending:
            break
        time.sleep(min(wait, 0.01))  # the last, partial batch lingers
    elapsed = time.perf_counter() - started
    loop.close()
    client.close()
    return elapsed


def bare_rate(n: int, batch_size: int) -> float:
    """Return movements/s of a bare httpx loop posting the same batches, pre-encoded, to a fresh sandbox."""
    items = movements(n, f"D{batch_size}")
    bodies = [_body(items[i : i + batch_size]) for i in range(0, n, batch_size)]
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = start_sandbox(Path(tmp) / "wms")
        try:
            elapsed = _post_all(sandbox.url, bodies)
            _check_applied(sandbox, n)
        finally:
            sandbox.stop()
    return n / elapsed


def _body(batch: list[Movement]) -> bytes:
    """Return the request body of one push, exactly as ``PossyncWmsClient.push`` builds it."""
    return ('{"events":[' + ",".join(m.to_json() for m in batch) + "]}").encode()


def _post_all(url: str, bodies: list[bytes]) -> float:
    """POST every body in order over one client; return the seconds it took."""
    headers = {"Authorization": f"Bearer {WMS_TOKEN}", "Content-Type": "application/json"}
    path = f"/v1/stores/{STORE}/movements"
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        started = time.perf_counter()
        for body in bodies:
            response = http.post(path, content=body)
            if response.status_code != 200:
                raise RuntimeError(f"bare loop: HTTP {response.status_code}: {response.text[:200]}")
        return time.perf_counter() - started


def _check_applied(sandbox: Sandbox, n: int) -> None:
    """Raise unless the sandbox applied exactly ``n`` movements."""
    applied = int(sandbox.stats()["applied"])
    if applied != n:
        raise RuntimeError(f"the sandbox applied {applied} of {n} movements")
