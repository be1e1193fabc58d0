from dataclasses import replace
from decimal import Decimal

from agent.domain import ItemRecord
from agent.mapping import ItemMaster, gtin14
from tests.unit.test_domain import movement

ITEMS = [
    ItemRecord(
        sku="SKU-3001",
        base_unit="EA",
        units={"EA": Decimal(1), "CS": Decimal(12)},
        barcodes=("0055512340004",),
        aliases=("CLEAN200",),
    ),
    ItemRecord(
        sku="SKU-1001", base_unit="EA", units={"EA": Decimal(1)}, barcodes=("0012345678905",), aliases=("TR42",)
    ),
    ItemRecord(sku="KG-1", base_unit="KG", units={}, barcodes=("2000000000015",)),
]


def unmapped(item: str, qty: str = "2", unit: str | None = "EA"):
    q = Decimal(qty)
    return replace(
        movement(), sku=None, raw_item_id=item, quantity=q, original_quantity=q, unit=unit, original_unit=unit
    )


def test_lookup_by_sku_barcode_alias_and_gtin_forms() -> None:
    master = ItemMaster(ITEMS)
    assert len(master) == 3
    for code in ("SKU-3001", "sku-3001", "0055512340004", "55512340004", "00055512340004", "clean200"):
        record = master.lookup(code)
        assert record is not None and record.sku == "SKU-3001", code
    assert gtin14("12345678905") == "00012345678905" and gtin14("TR42") is None
    assert master.lookup("9999") is None


def test_case_to_each_conversion_and_base_unit_default() -> None:
    master = ItemMaster(ITEMS)
    mapped, issues = master.map(
        [unmapped("0055512340004", "2", "CS"), unmapped("TR42", "3", None), unmapped("KG-1", "0.42", "kg")]
    )
    assert issues == []
    assert [(m.sku, m.quantity, m.unit) for m in mapped] == [
        ("SKU-3001", 24, "EA"),
        ("SKU-1001", 3, "EA"),
        ("KG-1", Decimal("0.42"), "KG"),
    ]
    assert mapped[0].original_quantity == 2 and mapped[0].original_unit == "CS"


def test_unknown_item_or_unit_stays_unmapped_with_an_issue_in_words() -> None:
    master = ItemMaster(ITEMS)
    mapped, issues = master.map([unmapped("4006381333931"), unmapped("TR42", "1", "PALLET")])
    assert [m.sku for m in mapped] == [None, None]
    assert [i.code for i in issues] == ["UNKNOWN_ITEM", "UNKNOWN_UNIT"]
    assert "'4006381333931' is not in the WMS item master" in issues[0].message
    assert "unit 'PALLET' is not defined for SKU-1001" in issues[1].message
    assert issues[0].event_id == mapped[0].event_id and issues[0].raw_item_id == "4006381333931"


def test_a_sku_wins_over_another_items_alias() -> None:
    clash = [ItemRecord(sku="A1", aliases=("B2",)), ItemRecord(sku="B2")]
    assert ItemMaster(clash).lookup("B2").sku == "B2"  # type: ignore[union-attr]


def test_plu_codes_padded_as_gtins_and_units_beyond_cases() -> None:
    produce = ItemRecord(
        sku="BANANA",
        base_unit="KG",
        units={"KGM": Decimal(1), "G": Decimal("0.001"), "LBR": Decimal("0.45359237")},
        barcodes=("4011",),
    )
    socks = ItemRecord(sku="SOCK-3", base_unit="EA", units={"PK6": Decimal(6)}, aliases=("Wool Sock 3-pack",))
    master = ItemMaster([produce, socks, *ITEMS])
    for code in ("4011", "00000000004011", "0004011"):
        assert master.lookup(code) is produce, code
    assert master.lookup("40110") is None and master.lookup("0000") is None
    mapped, issues = master.map(
        [
            unmapped("00000000004011", "0.75", "KGM"),
            unmapped("4011", "250", "g"),
            unmapped("4011", "2", "LBR"),
            unmapped("wool sock 3-PACK", "2", "pk6"),
        ]
    )
    assert issues == []
    assert [(m.sku, m.quantity, m.unit) for m in mapped] == [
        ("BANANA", Decimal("0.75"), "KG"),
        ("BANANA", Decimal("0.250"), "KG"),
        ("BANANA", Decimal("0.90718474"), "KG"),
        ("SOCK-3", 12, "EA"),
    ]
