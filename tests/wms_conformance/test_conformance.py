"""The WMS-client contract, checked the same way against every kind over real sockets."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from agent.domain import Kind, Movement, Outcome, make_event_id
from tests.support.tryton import free_port
from tests.unit.test_domain import movement
from tests.wms_conformance.conftest import Harness
from wms_client.base import WmsAuthError, WmsUnavailable


def sale(n: int, sku: str = "SKU-1001", qty: str = "2") -> Movement:
    return movement(
        event_id=make_event_id("S001", f"C-{n}", 1, Kind.SALE),
        pos_transaction_id=f"C-{n}",
        sku=sku,
        quantity=Decimal(qty),
        original_quantity=Decimal(qty),
    )


def on_hand(wms: Harness, sku: str, location: str = "S001") -> Decimal:
    client = wms.client()
    try:
        levels = {(lv.sku, lv.location): lv.on_hand for lv in client.stock_snapshot().levels}
    finally:
        client.close()
    return levels.get((sku, location), Decimal(0))


class LoseAnswer(httpx.BaseTransport):
    """Send every request for real, but lose the answer of request number ``lose`` (1-based)."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose = lose
        self.count = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.count += 1
        if self.count == self.lose:
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost on purpose", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_accepted_then_duplicate_and_the_stock_moves_once(wms: Harness) -> None:
    client = wms.client()
    before = on_hand(wms, "SKU-1001")
    first = client.push([sale(1)])
    assert [r.outcome for r in first.results] == [Outcome.ACCEPTED], first
    again = client.push([sale(1)])
    assert [r.outcome for r in again.results] == [Outcome.DUPLICATE], again
    assert on_hand(wms, "SKU-1001") == before - 2
    assert wms.applied(sale(1).event_id) == 1
    client.close()


def test_one_unknown_sku_is_rejected_in_words_and_the_rest_of_the_batch_applies(wms: Harness) -> None:
    client = wms.client()
    before = on_hand(wms, "SKU-1002")
    report = client.push([sale(2, "SKU-1002", "1"), sale(3, "NO-SUCH-SKU"), sale(4, "SKU-1002", "3")])
    outcomes = [r.outcome for r in report.results]
    assert outcomes == [Outcome.ACCEPTED, Outcome.REJECTED, Outcome.ACCEPTED], report
    rejected = report.results[1]
    assert rejected.code and rejected.message and "NO-SUCH-SKU" in rejected.message
    assert on_hand(wms, "SKU-1002") == before - 4
    assert wms.applied(sale(3).event_id) == 0
    client.close()


def test_an_unreachable_wms_means_retry_not_an_exception(wms: Harness) -> None:
    client = wms.client(url=f"http://127.0.0.1:{free_port()}")
    report = client.push([sale(5), sale(6)])
    assert [r.outcome for r in report.results] == [Outcome.RETRY, Outcome.RETRY]
    assert report.error and not report.auth_failed
    with pytest.raises(WmsUnavailable):
        client.stock_snapshot()
    with pytest.raises(WmsUnavailable):
        client.item_master()
    client.close()


def test_throttling_means_retry_after_the_servers_delay(throttling_wms: Harness) -> None:
    wms = throttling_wms
    assert wms.throttle(7)
    client = wms.client()
    report = client.push([sale(7)])
    assert [r.outcome for r in report.results] == [Outcome.RETRY] and report.retry_after == 7
    assert wms.applied(sale(7).event_id) == 0
    client.close()


def test_refused_credentials_pause_delivery(wms: Harness) -> None:
    client = wms.client(secret="not-the-secret")
    report = client.push([sale(8)])
    assert report.auth_failed and report.results == [] and report.error
    with pytest.raises(WmsAuthError):
        client.ping()
    with pytest.raises(WmsAuthError):
        client.item_master()
    assert wms.applied(sale(8).event_id) == 0
    client.close()


def test_item_master_lists_products_with_their_codes(wms: Harness) -> None:
    client = wms.client()
    items = {item.sku: item for item in client.item_master()}
    assert {"SKU-1001", "SKU-3001", "SKU-5001"} <= set(items)
    runner = items["SKU-1001"]
    assert "0012345678905" in runner.barcodes + runner.aliases and "TR42" in runner.barcodes + runner.aliases
    assert items["SKU-3001"].units.get("CS") == 12
    assert client.ping() >= 0
    client.close()


@pytest.mark.parametrize("lose", [1, 2, 3, 4, 5, 6, 7, 8])
def test_a_lost_answer_then_a_resend_applies_the_event_exactly_once(wms: Harness, lose: int) -> None:
    """Whatever request's answer is lost (the WMS may or may not have applied it), resending is safe."""
    event = sale(100 + lose, "SKU-2001", "1")
    before = on_hand(wms, "SKU-2001")
    lossy = wms.client(transport=LoseAnswer(lose))
    first = lossy.push([event])
    lossy.close()
    assert first.results and first.results[0].outcome in (Outcome.ACCEPTED, Outcome.RETRY), first
    client = wms.client()
    second = client.push([event])
    assert second.results[0].outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE), second
    third = client.push([event])
    assert third.results[0].outcome is Outcome.DUPLICATE
    client.close()
    assert wms.applied(event.event_id) == 1
    assert on_hand(wms, "SKU-2001") == before - 1


def test_ack_positions_and_snapshot_versions_are_on_one_scale(wms: Harness) -> None:
    """The stock view's rule: an ack at or below a snapshot's version is in it; above it, it is not."""
    client = wms.client()
    try:
        first = client.push([sale(801)]).results[0]
        snapshot = client.stock_snapshot()
        second = client.push([sale(802)]).results[0]
        again = client.push([sale(801)]).results[0]
        later = client.stock_snapshot()
    finally:
        client.close()
    assert first.outcome is Outcome.ACCEPTED and second.outcome is Outcome.ACCEPTED
    assert first.position is not None and second.position is not None
    assert first.position <= snapshot.version < second.position <= later.version
    assert again.outcome is Outcome.DUPLICATE and again.position is not None
    if wms.kind == "possync":  # a real ledger answers the original position; the others a fresh, later one
        assert again.position == first.position
