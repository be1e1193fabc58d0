import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.domain import Disposition, Kind, Movement, check_secret_ref, make_event_id, parse_duration


def movement(**overrides: object) -> Movement:
    fields: dict[str, object] = {
        "event_id": make_event_id("S001", "T1", 1, Kind.SALE),
        "store_id": "S001",
        "terminal_id": "R1",
        "pos_transaction_id": "T1",
        "line_no": 1,
        "business_day": date(2026, 11, 20),
        "occurred_at": datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        "kind": Kind.SALE,
        "sku": "SKU-1",
        "raw_item_id": "0012345678905",
        "quantity": Decimal("2"),
        "unit": "EA",
        "original_quantity": Decimal("2"),
        "original_unit": "EA",
        "location": "S001",
    }
    fields.update(overrides)
    return Movement(**fields)  # type: ignore[arg-type]


def test_event_id_is_deterministic_and_depends_on_each_key_part() -> None:
    base = make_event_id("S001", "R2-020262", 1, Kind.SALE)
    assert base == make_event_id("S001", "R2-020262", 1, "sale")
    others = {
        make_event_id("S002", "R2-020262", 1, Kind.SALE),
        make_event_id("S001", "R2-020263", 1, Kind.SALE),
        make_event_id("S001", "R2-020262", 2, Kind.SALE),
        make_event_id("S001", "R2-020262", 1, Kind.RETURN),
    }
    assert base not in others and len(others) == 4


def test_event_id_parts_cannot_be_confused_by_concatenation() -> None:
    assert make_event_id("S1", "23", 1, Kind.SALE) != make_event_id("S12", "3", 1, Kind.SALE)


@pytest.mark.parametrize(
    ("kind", "disposition", "delta"),
    [
        (Kind.SALE, None, Decimal(-2)),
        (Kind.TRANSFER_OUT, None, Decimal(-2)),
        (Kind.RETURN, None, Decimal(2)),
        (Kind.RETURN, Disposition.SELLABLE, Decimal(2)),
        (Kind.RETURN, Disposition.DAMAGED, Decimal(0)),
        (Kind.TRANSFER_IN, None, Decimal(2)),
        (Kind.ADJUSTMENT, None, Decimal(2)),
    ],
)
def test_stock_delta_per_kind(kind: Kind, disposition: Disposition | None, delta: Decimal) -> None:
    assert movement(kind=kind, disposition=disposition).stock_delta() == delta


def test_wire_round_trip_keeps_every_field() -> None:
    original = movement(
        unit_price=Decimal("19.90"),
        currency="USD",
        counterpart_location="DC01",
        disposition=Disposition.HOLD,
        quantity=Decimal("0.420"),
        source="pos",
        source_ref="a.csv row 2",
    )
    back = Movement.from_json(original.to_json())
    assert back == original
    assert original.to_wire()["quantity"] == "0.42"


def test_unmapped_movement_round_trips() -> None:
    original = movement(sku=None, unit=None)
    assert not original.is_mapped
    assert Movement.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("1h", 3600), ("30s", 30), ("2d", 172800), ("250ms", 0.25), (15, 15), ("12", 12)]
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5m", True, None, "5 parsecs"])
def test_parse_duration_rejects_nonsense(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_secret_refs_only() -> None:
    for ok in ("keyring:possync/wms", "env:WMS_TOKEN", "file:/etc/possync/wms.secret"):
        assert check_secret_ref(ok) == ok
    for bad in ("s3cr3t-token", "keyring:", "env:"):
        with pytest.raises(ValueError, match="never written in the config file"):
            check_secret_ref(bad)


texts = st.text(max_size=12)  # any code point, quotes, backslashes and control characters included


@given(
    terminal=texts,
    txn=texts,
    raw=texts,
    sku=st.none() | texts,
    unit=st.none() | texts,
    source_ref=texts,
    quantity=st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=4, allow_nan=False),
    price=st.none() | st.decimals(min_value=Decimal(0), max_value=Decimal("1e5"), places=2, allow_nan=False),
    kind=st.sampled_from(Kind),
    disposition=st.none() | st.sampled_from(Disposition),
    counterpart=st.none() | texts,
)
def test_the_fast_json_is_exactly_the_encoders_json_of_the_wire_form(
    terminal: str,
    txn: str,
    raw: str,
    sku: str | None,
    unit: str | None,
    source_ref: str,
    quantity: Decimal,
    price: Decimal | None,
    kind: Kind,
    disposition: Disposition | None,
    counterpart: str | None,
) -> None:
    m = movement(
        terminal_id=terminal,
        pos_transaction_id=txn,
        raw_item_id=raw,
        sku=sku,
        unit=unit,
        original_unit=unit,
        source_ref=source_ref,
        quantity=quantity,
        original_quantity=quantity,
        unit_price=price,
        currency=None if price is None else "USD",
        kind=kind,
        disposition=disposition,
        counterpart_location=counterpart,
        occurred_at=datetime(2026, 11, 20, 9, 0, 5, 123456, tzinfo=UTC),
    )
    assert m.to_json() == json.dumps(m.to_wire(), separators=(",", ":"))
    assert Movement.from_json(m.to_json()).to_wire() == m.to_wire()
