"""The real client against the real sandbox WMS over a socket on 127.0.0.1."""

import threading
from decimal import Decimal

import httpx
import pytest

from agent.domain import Kind, Outcome, make_event_id
from tests.unit.test_domain import movement
from wms_client.base import WmsAuthError, WmsUnavailable
from wms_client.possync_http import PossyncWmsClient, PossyncWmsSettings
from wms_client.sandbox.server import SandboxServer


def client_for(sandbox: SandboxServer, token: str) -> PossyncWmsClient:
    return PossyncWmsClient(PossyncWmsSettings(url=sandbox.url, token="env:X", timeout_s=5), "S001", lambda _r: token)


def sale(i: int, sku: str = "SKU-1001", qty: str = "1", **extra: object):
    return movement(
        event_id=make_event_id("S001", "T", i, Kind.SALE), line_no=i, sku=sku, quantity=Decimal(qty), **extra
    )


def test_accepted_then_duplicate_then_rejections(sandbox: SandboxServer, token: str) -> None:
    wms = client_for(sandbox, token)
    first = wms.push([sale(1), sale(2, "NOPE"), sale(3, qty="1.5"), sale(4, location="DC01")])
    assert [(r.outcome, r.code) for r in first.results] == [
        (Outcome.ACCEPTED, None),
        (Outcome.REJECTED, "UNKNOWN_SKU"),
        (Outcome.REJECTED, "BAD_QUANTITY"),
        (Outcome.REJECTED, "UNKNOWN_LOCATION"),
    ]
    again = wms.push([sale(1)])
    assert again.results[0].outcome is Outcome.DUPLICATE
    assert sandbox.ledger.stats()["applied"] == 1


def test_stock_snapshot_is_consistent_while_sales_arrive(sandbox: SandboxServer, token: str) -> None:
    wms = client_for(sandbox, token)
    before = {(s.sku, s.location): s.on_hand for s in wms.stock_snapshot().levels}
    assert before[("SKU-1001", "S001")] == 40
    stop = threading.Event()

    def keep_selling() -> None:
        i = 100
        while not stop.is_set():
            wms2 = client_for(sandbox, token)
            wms2.push([sale(i)])
            i += 1

    seller = threading.Thread(target=keep_selling)
    seller.start()
    try:
        items = []
        with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {token}"}) as http:
            page = http.get("/v1/stores/S001/stock", params={"page_size": 1}).json()
            version = page["version"]
            items += page["items"]
            while page["next_page_token"]:
                page = http.get(
                    "/v1/stores/S001/stock", params={"page_size": 1, "page_token": page["next_page_token"]}
                ).json()
                assert page["version"] == version  # pinned
                items += page["items"]
    finally:
        stop.set()
        seller.join()
    # Every sale is one SKU-1001 and versions count applied events: the pinned picture is exact.
    runner = next(i for i in items if i["sku"] == "SKU-1001" and i["location"] == "S001")
    assert Decimal(runner["on_hand"]) == 40 - version
    assert wms.stock_snapshot().version > version


def test_item_master_over_pages(sandbox: SandboxServer, token: str) -> None:
    items = client_for(sandbox, token).item_master()
    assert len(items) == 10
    cleaner = next(i for i in items if i.sku == "SKU-3001")
    assert cleaner.units["CS"] == 12 and cleaner.barcodes == ("0055512340004",)


def test_wrong_token_and_rotation(sandbox: SandboxServer, token: str) -> None:
    with pytest.raises(WmsAuthError):
        client_for(sandbox, "wrong").ping()
    assert client_for(sandbox, "wrong").push([sale(1)]).auth_failed
    httpx.post(
        f"{sandbox.url}/_sandbox/token", json={"token": "rotated-1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert client_for(sandbox, token).push([sale(1)]).auth_failed
    assert client_for(sandbox, "rotated-1").push([sale(1)]).results[0].outcome is Outcome.ACCEPTED


def test_faults_throttle_and_refuse(sandbox: SandboxServer, token: str) -> None:
    admin = {"Authorization": f"Bearer {token}"}
    wms = client_for(sandbox, token)
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"throttle_rate": 1.0, "retry_after_s": 4}, headers=admin)
    report = wms.push([sale(1)])
    assert report.retry_after == 4 and report.results[0].outcome is Outcome.RETRY
    httpx.post(
        f"{sandbox.url}/_sandbox/faults", json={"throttle_rate": 0, "fail_after_commit_rate": 1.0}, headers=admin
    )
    assert wms.push([sale(2)]).results[0].outcome is Outcome.RETRY
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"fail_after_commit_rate": 0}, headers=admin)
    assert wms.push([sale(2)]).results[0].outcome is Outcome.DUPLICATE  # it had been applied
    sandbox.refuse(1.0)
    import time

    time.sleep(0.3)
    assert "refused" in (wms.push([sale(3)]).error or "").lower()
    with pytest.raises(WmsUnavailable):
        wms.ping()
    time.sleep(1.2)
    assert wms.ping() > 0


def test_batch_limits(sandbox: SandboxServer, token: str) -> None:
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post("/v1/stores/S001/movements", json={"events": [{}] * 501}).status_code == 413
        assert http.post("/v1/stores/S001/movements", content=b"{not json").status_code == 400
        assert http.post("/v1/stores/S001/movements", json={"evts": []}).status_code == 400
        bad = http.post("/v1/stores/S001/movements", json={"events": [{"event_id": "x", "store_id": "S002"}]}).json()
        assert bad["results"][0]["code"] == "STORE_MISMATCH"
