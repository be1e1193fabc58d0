"""The InvenTree client against the API double over a real socket: the behaviours InvenTree is known for."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from agent.domain import Disposition, Kind, Outcome, make_event_id
from tests.support.helpers import ITEMS_CSV
from tests.support.inventree_fake import InvenTreeFake
from tests.unit.test_domain import movement
from wms_client.inventree import InvenTreeWmsClient, InvenTreeWmsSettings


@pytest.fixture
def fake() -> Iterator[InvenTreeFake]:
    server = InvenTreeFake.from_items_csv(ITEMS_CSV)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client_for(fake: InvenTreeFake) -> InvenTreeWmsClient:
    settings = InvenTreeWmsSettings(
        url=fake.url, token="env:X", location="S001", damaged_location="S001-DMG", timeout_s=5
    )
    return InvenTreeWmsClient(settings, "S001", lambda _r: fake.token)


def event(n: int, kind: Kind = Kind.SALE, sku: str = "SKU-1003", qty: str = "1", **extra: object):
    return movement(
        event_id=make_event_id("S001", f"I-{n}", 1, kind),
        pos_transaction_id=f"I-{n}",
        kind=kind,
        sku=sku,
        quantity=Decimal(qty),
        **extra,
    )


def test_selling_more_than_inventree_holds_is_rejected_in_words_not_silently_clipped(fake: InvenTreeFake) -> None:
    report = client_for(fake).push([event(1, qty="24")])  # 23 on hand
    (result,) = report.results
    assert result.outcome is Outcome.REJECTED and result.code == "INSUFFICIENT_STOCK"
    assert "has 23 of SKU-1003" in (result.message or "") and "less than the 24" in (result.message or "")
    assert fake.on_hand("SKU-1003", "S001") == 23


def test_selling_the_last_unit_keeps_the_item_and_its_marker_so_a_resend_is_a_duplicate(fake: InvenTreeFake) -> None:
    wms = client_for(fake)
    assert wms.push([event(2, qty="23")]).results[0].outcome is Outcome.ACCEPTED
    assert fake.on_hand("SKU-1003", "S001") == 0
    assert wms.push([event(2, qty="23")]).results[0].outcome is Outcome.DUPLICATE
    assert fake.applied(event(2).event_id) == 1


def test_database_is_locked_is_retried_and_applies_once(fake: InvenTreeFake) -> None:
    wms = client_for(fake)
    fake.lock_database(1)
    first = wms.push([event(3)])
    assert first.results[0].outcome is Outcome.RETRY and "database is locked" in (first.error or "")
    assert wms.push([event(3)]).results[0].outcome is Outcome.ACCEPTED
    assert fake.applied(event(3).event_id) == 1 and fake.on_hand("SKU-1003", "S001") == 22


def test_returns_transfers_and_adjustments_move_stock_where_they_should(fake: InvenTreeFake) -> None:
    wms = client_for(fake)
    report = wms.push(
        [
            event(4, Kind.RETURN, "SKU-1001", "2"),
            event(5, Kind.RETURN, "SKU-1001", "1", disposition=Disposition.DAMAGED),
            event(6, Kind.TRANSFER_OUT, "SKU-4001", "2", counterpart_location="DC01"),
            event(7, Kind.TRANSFER_OUT, "SKU-4001", "2", counterpart_location="NOWHERE"),
            event(8, Kind.ADJUSTMENT, "SKU-2001", "-5"),
        ]
    )
    assert [r.outcome for r in report.results] == [Outcome.ACCEPTED] * 3 + [Outcome.REJECTED, Outcome.ACCEPTED]
    assert report.results[3].code == "UNKNOWN_LOCATION"
    assert fake.on_hand("SKU-1001", "S001") == 42 and fake.on_hand("SKU-1001", "S001-DMG") == 1
    assert fake.on_hand("SKU-4001", "S001") == 31 and fake.on_hand("SKU-4001", "DC01") == 578
    assert fake.on_hand("SKU-2001", "S001") == 67
    levels = {(lv.sku, lv.location): lv.on_hand for lv in wms.stock_snapshot().levels}
    assert levels[("SKU-1001", "S001:damaged")] == 1 and levels[("SKU-4001", "S001")] == 31
