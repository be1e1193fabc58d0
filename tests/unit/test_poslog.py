"""ARTS POSLog reading: real NCR exports, namespace variants, void conventions, hostile XML."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.domain import CaptureIssue, Movement, PostVoid
from pos_adapters import poslog
from pos_adapters.base import SourceContext
from pos_adapters.poslog import PoslogOptions, read_poslog
from pos_adapters.reading import Chunk, MalformedFile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NCR = FIXTURES / "ncr-acs" / "POSLog.xml"
CTX = SourceContext(
    store_id="S001", timezone=ZoneInfo("America/Chicago"), base_dir=Path(), data_dir=Path(), location="S001"
)
ARTS = "http://www.nrf-arts.org/IXRetail/namespace/"


def read(path: Path, **kw: object) -> tuple[list[Movement], list[CaptureIssue], list[PostVoid], list[Chunk]]:
    chunks = list(read_poslog(path, CTX, source="poslog", **kw))  # type: ignore[arg-type]
    return (
        [m for c in chunks for m in c.movements],
        [i for c in chunks for i in c.issues],
        [v for c in chunks for v in c.voids],
        chunks,
    )


def txn(seq: int, body: str, *, attrs: str = "", p: str = "", ws: str = "2") -> str:
    return (
        f"<{p}Transaction{attrs}><{p}RetailStoreID>1</{p}RetailStoreID><{p}WorkstationID>{ws}</{p}WorkstationID>"
        f"<{p}SequenceNumber>{seq}</{p}SequenceNumber><{p}BusinessDayDate>2026-11-20</{p}BusinessDayDate>"
        f"<{p}EndDateTime>2026-11-20T10:00:00</{p}EndDateTime>{body}</{p}Transaction>"
    )


def sale(seq: int, item: str, qty: str, *, p: str = "", void: bool = False, kind: str = "Sale") -> str:
    flag = ' VoidFlag="true"' if void else ""
    return (
        f"<{p}LineItem{flag}><{p}SequenceNumber>{seq}</{p}SequenceNumber><{p}{kind}><{p}ItemID>{item}</{p}ItemID>"
        f"<{p}Quantity>{qty}</{p}Quantity></{p}{kind}></{p}LineItem>"
    )


def retail(*lines: str, p: str = "", attrs: str = "") -> str:
    return f"<{p}RetailTransaction{attrs}>{''.join(lines)}</{p}RetailTransaction>"


def write(tmp_path: Path, text: str, name: str = "log.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_real_ncr_export_nets_its_voids(tmp_path: Path) -> None:
    movements, issues, voids, chunks = read(NCR, chunk_rows=100)
    assert chunks[-1].rows == 51 and issues == [] and voids == []
    assert len(movements) == 552 - 8  # 552 Sale lines; 4 void lines each cancel one earlier line
    assert len({m.event_id for m in movements}) == len(movements)
    lines = {(m.pos_transaction_id, m.line_no): m for m in movements}
    # 1/376: lines 15-17 sell 00021908501406 once each; line 18 voids one: the latest (17) goes.
    assert [n for n in (15, 16, 17, 18) if ("9-1-376-20171001", n) in lines] == [15, 16]
    assert ("9-31-115-20171001", 7) not in lines and lines[("9-31-115-20171001", 8)].quantity == Decimal("1.47")
    assert ("9-2-301-20171001", 12) not in lines and ("9-2-301-20171001", 13) not in lines
    # 3/92: 7.21 lb of almond butter (line 8) voided by line 9, then weighed again as lines 10-12.
    almond = [(m.line_no, str(m.quantity)) for m in movements if m.raw_item_id == "00000000090537"]
    assert almond == [(10, "1.71"), (11, "1.63"), (12, "1.72")]
    weighed = lines[("9-31-114-20171001", 4)]
    assert weighed.quantity == Decimal("0.65") and weighed.unit is None and weighed.terminal_id == "31"
    assert weighed.occurred_at.isoformat() == "2017-10-01T15:15:25-05:00"
    assert [c.rows for c in chunks] == sorted(c.rows for c in chunks)


@pytest.mark.parametrize(
    ("open_tag", "close_tag", "p"),
    [
        (f'<POSLog xmlns="{ARTS}">', "</POSLog>", ""),
        (f'<poslog:POSLog xmlns:poslog="{ARTS}">', "</poslog:POSLog>", "poslog:"),
        ("<POSLog>", "</POSLog>", ""),
        ('<v:POSLog xmlns:v="urn:vendor:own:namespace">', "</v:POSLog>", "v:"),
        (
            f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><POSLog xmlns="{ARTS}">',
            "</POSLog></soap:Body></soap:Envelope>",
            "",
        ),
    ],
)
def test_namespace_variations_read_the_same(tmp_path: Path, open_tag: str, close_tag: str, p: str) -> None:
    body = retail(sale(1, "SKU-1", "2", p=p), sale(2, "SKU-2", "1.5", p=p, kind="Return"), p=p)
    path = write(tmp_path, f'<?xml version="1.0"?>{open_tag}{txn(7, body, p=p)}{close_tag}')
    movements, issues, _, _ = read(path)
    assert [(m.pos_transaction_id, m.line_no, m.kind.value, m.raw_item_id, str(m.quantity)) for m in movements] == [
        ("1-2-7-20261120", 1, "sale", "SKU-1", "2"),
        ("1-2-7-20261120", 2, "return", "SKU-2", "1.5"),
    ]
    assert issues == []


def test_a_single_transaction_file_and_status_written_as_elements(tmp_path: Path) -> None:
    path = write(tmp_path, txn(1, retail(sale(1, "SKU-1", "1"))))
    assert len(read(path)[0]) == 1
    status = "<TransactionStatus>Cancelled</TransactionStatus>"
    cancelled = txn(2, retail(status + sale(1, "SKU-1", "1")))
    training = txn(3, "<TrainingModeFlag>true</TrainingModeFlag>" + retail(sale(1, "SKU-1", "1")))
    suspended = txn(4, retail(sale(1, "SKU-1", "1"), attrs=' TransactionStatus="Suspended"'))
    path = write(tmp_path, f"<POSLog>{cancelled}{training}{suspended}</POSLog>")
    assert read(path)[:3] == ([], [], [])


def test_ncr_void_lines_match_item_and_quantity_partially_if_need_be(tmp_path: Path) -> None:
    body = retail(
        sale(1, "A", "1"),
        sale(2, "A", "1"),
        sale(3, "B", "1.47"),
        sale(4, "A", "-2", void=True),  # cancels lines 2 and 1
        sale(5, "C", "3"),
        sale(6, "C", "-1", void=True),  # no exact match: line 5 keeps 2
        sale(7, "D", "-1", void=True),  # nothing to cancel: moves nothing either
        sale(8, "B", "1", void=True),  # ARTS: the voided line itself, moves nothing
        sale(9, "E", "-2"),  # a negative line without VoidFlag is a return
    )
    movements, issues, _, _ = read(write(tmp_path, f"<POSLog>{txn(1, body)}</POSLog>"))
    assert [(m.line_no, m.kind.value, m.raw_item_id, str(m.quantity)) for m in movements] == [
        (3, "sale", "B", "1.47"),
        (5, "sale", "C", "2"),
        (9, "return", "E", "2"),
    ]
    assert issues == []


def test_item_id_choice_units_prices_and_lines_that_move_nothing(tmp_path: Path) -> None:
    line = (
        "<LineItem><SequenceNumber>1</SequenceNumber><Sale><POSIdentity><POSItemID>0012345678905</POSItemID>"
        "</POSIdentity><ItemID>SKU-1001</ItemID><ActualSalesUnitPrice>80.10</ActualSalesUnitPrice>"
        '<RegularSalesUnitPrice>89.00</RegularSalesUnitPrice><Quantity UnitOfMeasureCode="cs">2</Quantity></Sale></LineItem>'
        '<LineItem><SequenceNumber>2</SequenceNumber><Sale ItemType="Service"><ItemID>FEE</ItemID></Sale></LineItem>'
        "<LineItem><SequenceNumber>3</SequenceNumber><Sale><ItemID>SKU-2</ItemID></Sale></LineItem>"
        "<LineItem><SequenceNumber>4</SequenceNumber><Tender><Amount>1</Amount></Tender></LineItem>"
    )
    path = write(tmp_path, f"<POSLog>{txn(1, retail(line))}</POSLog>")
    first, third = read(path)[0]
    assert (first.raw_item_id, first.unit, first.quantity, first.unit_price) == ("SKU-1001", "CS", 2, Decimal("80.10"))
    assert (third.raw_item_id, third.quantity) == ("SKU-2", 1)  # no Quantity: one item
    first, _ = read(path, options=PoslogOptions(item_id="POSItemID"))[0]
    assert first.raw_item_id == "0012345678905"


def test_post_void_links_and_their_mistakes(tmp_path: Path) -> None:
    link = (
        '<ControlTransaction><TransactionLink ReasonCode="PostVoid"><WorkstationID>3</WorkstationID>'
        "<SequenceNumber>58</SequenceNumber><BusinessDayDate>2026-11-19</BusinessDayDate></TransactionLink>"
        "</ControlTransaction>"
    )
    no_seq = '<ControlTransaction><TransactionLink ReasonCode="PostVoid"/></ControlTransaction>'
    copies = retail(
        sale(1, "SKU-1", "1"),
        '<TransactionLink ReasonCode="PostVoid"><SequenceNumber>9</SequenceNumber></TransactionLink>',
    )
    resume = retail(
        sale(1, "SKU-1", "1"),
        '<TransactionLink ReasonCode="Resume"><SequenceNumber>5</SequenceNumber></TransactionLink>',
    )
    path = write(tmp_path, f"<POSLog>{txn(60, link)}{txn(61, no_seq)}{txn(62, copies)}{txn(63, resume)}</POSLog>")
    movements, issues, voids, _ = read(path)
    assert [(v.pos_transaction_id, v.voided_transaction_id, v.voided_terminal_id) for v in voids] == [
        ("1-2-60-20261120", "1-3-58-20261119", "3"),
        ("1-2-62-20261120", "1-2-9-20261120", "2"),  # a post-void's own lines are copies: ignored
    ]
    assert [(i.code, i.source_ref) for i in issues] == [("BAD_VOID", "log.xml transaction 1-2-61-20261120")]
    assert [m.pos_transaction_id for m in movements] == ["1-2-63-20261120"]  # a resumed sale counts


def test_a_transaction_without_its_identity_is_one_issue(tmp_path: Path) -> None:
    text = (
        "<POSLog><Transaction><WorkstationID>2</WorkstationID><EndDateTime>2026-11-20T10:00:00</EndDateTime>"
        + retail(sale(1, "A", "1"), sale(2, "B", "1"))
        + "</Transaction>"
        + txn(5, retail(sale(1, "A", "x")))
        + "</POSLog>"
    )
    movements, issues, _, _ = read(write(tmp_path, text))
    assert movements == []
    assert [(i.code, i.source_ref) for i in issues] == [
        ("MISSING_FIELD", "log.xml transaction ?/2/?"),
        ("BAD_NUMBER", "log.xml transaction 1-2-5-20261120 line 1"),
    ]
    assert "<WorkstationID>2</WorkstationID>" in issues[0].raw and "<Quantity>x</Quantity>" in issues[1].raw


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<POSLog><Transaction><SequenceNumber>&lol3;</SequenceNumber></Transaction></POSLog>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY secret SYSTEM "file:///etc/passwd">]><POSLog>&secret;</POSLog>"""


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (BILLION_LAUGHS, "document type (DTD)"),
        (XXE, "document type (DTD)"),
        ("", "empty or not XML"),
        ("this is not xml", "not well-formed XML"),
        ("<POSLog><Transaction></POSLog>", "not well-formed XML"),
        ("<poslog:POSLog><poslog:Transaction/></poslog:POSLog>", "not well-formed XML"),  # undeclared prefix
    ],
)
def test_hostile_or_broken_xml_is_refused_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(MalformedFile, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read(write(tmp_path, text))


def test_a_truncated_file_yields_what_came_before_then_refuses(tmp_path: Path) -> None:
    whole = "<POSLog>" + "".join(txn(i, retail(sale(1, "SKU-1", "1"))) for i in range(1, 6)) + "</POSLog>"
    path = write(tmp_path, whole[: whole.index("<SequenceNumber>4")])
    got: list[Chunk] = []
    with pytest.raises(MalformedFile, match="3 transaction"):
        got.extend(read_poslog(path, CTX, source="poslog", chunk_rows=1))
    assert [m.pos_transaction_id for c in got for m in c.movements] == [f"1-2-{i}-20261120" for i in (1, 2, 3)]


def test_memory_is_bounded_by_a_transaction_not_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poslog, "MAX_ELEMENTS", 60)
    many = "<POSLog><Header/>" + "".join(
        txn(i, retail(sale(1, "SKU-1", "1"), sale(2, "SKU-2", "2"))) for i in range(1, 2001)
    )
    path = write(tmp_path, many + "</POSLog>")
    movements, _, _, chunks = read(path, chunk_rows=500)
    assert len(movements) == 4000 and len(chunks) == 9  # every element released as it was read
    huge = "<POSLog>" + txn(1, retail(*(sale(i, "SKU-1", "1") for i in range(1, 40)))) + "</POSLog>"
    with pytest.raises(MalformedFile, match="more than 60 XML elements"):
        read(write(tmp_path, huge, "huge.xml"))
