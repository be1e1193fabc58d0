"""Tryton-specific behaviour of the client against a live trytond."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from agent.domain import Disposition, Kind, Outcome, make_event_id
from tests.support.tryton import DB, POSSYNC_PASSWORD, POSSYNC_USER, TrytonServer
from tests.unit.test_domain import movement
from wms_client.tryton import TrytonWmsClient, TrytonWmsSettings


def client_for(server: TrytonServer, **overrides: str) -> TrytonWmsClient:
    fields = {
        "url": server.url,
        "database": DB,
        "user": POSSYNC_USER,
        "password": "env:X",
        "warehouse": "S001",
        "customer": "POS",
        "damaged_location": "S001-DMG",
        "timeout_s": 5,
        **overrides,
    }
    return TrytonWmsClient(TrytonWmsSettings(**fields), "S001", lambda _r: POSSYNC_PASSWORD)  # type: ignore[arg-type]


def event(n: int, kind: Kind = Kind.SALE, sku: str = "SKU-1003", qty: str = "1", **extra: object):
    return movement(
        event_id=make_event_id("S001", f"L-{n}", 1, kind),
        pos_transaction_id=f"L-{n}",
        kind=kind,
        sku=sku,
        quantity=Decimal(qty),
        **extra,
    )


def test_two_shipments_with_one_reference_only_one_is_ever_done(tryton: TrytonServer) -> None:
    """The race a lookup can lose: a create committed late leaves a second draft with the same reference."""
    admin = tryton.rpc()
    sale = event(1)
    party = admin("party.party", "search_read", [("code", "=", "POS")], 0, 1, None, ["addresses", "customer_location"])[
        0
    ]
    (warehouse,) = admin("stock.location", "search", [("code", "=", "S001")], 0, 1, None)
    storage = admin.storage_of("S001")
    for _ in range(2):
        admin(
            "stock.shipment.out",
            "create",
            [
                {
                    "customer": party["id"],
                    "delivery_address": party["addresses"][0],
                    "warehouse": warehouse,
                    "warehouse_storage": storage,
                    "warehouse_output": storage,
                    "company": 1,
                    "reference": sale.event_id,
                    "planned_date": dt.date(2026, 11, 20),
                    "outgoing_moves": [
                        (
                            "create",
                            [
                                {
                                    "product": admin(
                                        "product.product", "search", [("code", "=", "SKU-1003")], 0, 1, None
                                    )[0],
                                    "unit": 1,
                                    "quantity": 1.0,
                                    "from_location": storage,
                                    "to_location": party["customer_location"],
                                    "unit_price": Decimal(0),
                                    "currency": 1,
                                    "company": 1,
                                }
                            ],
                        )
                    ],
                }
            ],
        )
    before = admin.stock(storage)["SKU-1003"]
    wms = client_for(tryton)
    assert wms.push([sale]).results[0].outcome is Outcome.ACCEPTED
    assert wms.push([sale]).results[0].outcome is Outcome.DUPLICATE
    states = sorted(s["state"] for s in admin.shipments_by_reference()[sale.event_id])
    assert states == ["done", "draft"]
    assert admin.stock(storage)["SKU-1003"] == before - 1
    admin.close()


def test_a_shipment_cancelled_in_tryton_is_not_applied_again(tryton: TrytonServer) -> None:
    wms = client_for(tryton)
    sale = event(2)
    assert wms.push([sale]).results[0].outcome is Outcome.ACCEPTED
    admin = tryton.rpc()
    (shipment,) = admin("stock.shipment.out", "search", [("reference", "=", sale.event_id)], 0, 1, None)
    admin("stock.shipment.out", "cancel", [shipment])
    (result,) = wms.push([sale]).results
    assert result.outcome is Outcome.REJECTED and result.code == "CANCELLED_IN_WMS"
    assert "cancelled" in (result.message or "")
    admin.close()


def test_damaged_returns_and_adjustments_land_in_their_locations(tryton: TrytonServer) -> None:
    admin = tryton.rpc()
    storage, damaged = admin.storage_of("S001"), admin.location("S001-DMG")
    before = admin.stock(storage)
    report = client_for(tryton).push(
        [
            event(3, Kind.RETURN, "SKU-2002", "2", disposition=Disposition.DAMAGED),
            event(4, Kind.RETURN, "SKU-2002", "1"),
            event(5, Kind.ADJUSTMENT, "SKU-2001", "-4"),
            event(6, Kind.ADJUSTMENT, "SKU-2001", "1"),
            event(7, Kind.TRANSFER_IN, "SKU-4002", "5", counterpart_location="DC01"),
        ]
    )
    assert [r.outcome for r in report.results] == [Outcome.ACCEPTED] * 5, report
    after = admin.stock(storage)
    assert after["SKU-2002"] == before["SKU-2002"] + 1 and admin.stock(damaged)["SKU-2002"] == 2
    assert after["SKU-2001"] == before["SKU-2001"] - 3
    assert after["SKU-4002"] == before["SKU-4002"] + 5
    admin.close()


def test_a_warehouse_code_tryton_does_not_know_is_retried_with_the_key_to_fix(tryton: TrytonServer) -> None:
    report = client_for(tryton, warehouse="S999").push([event(8)])
    assert report.results[0].outcome is Outcome.RETRY
    assert "S999" in (report.error or "") and "wms.warehouse" in (report.error or "")
