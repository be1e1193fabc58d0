"""Hostile ARTS POSLog XML through the streaming defusedxml reader.

Three generators: random POSLog-shaped trees whose element names come from the real vocabulary and
whose values are hostile; real exports damaged byte by byte; and hostile XML constructs (DTDs,
entities, external references, XInclude, deep nesting, huge attributes). Every file is read or
refused with ``MalformedFile`` and a reason; a well-formed but wrong transaction is an issue with a
reason; valid transactions beside hostile ones in the same file are all captured.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.capture import OutboxSink
from agent.domain import ItemRecord
from agent.mapping import ItemMaster
from outbox.queue import Outbox
from pos_adapters.base import Batch
from pos_adapters.poslog import read_poslog
from pos_adapters.reading import MalformedFile
from tests.fuzz._support import FUZZ, Counter, bounded, context, hostile_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL = [
    (FIXTURES / "ncr-acs" / "POSLog.xml").read_bytes()[:30_000],
    (FIXTURES / "file_drop" / "poslog-arts" / "input.xml").read_bytes(),
]
ITEMS = ItemMaster([ItemRecord(sku="SKU-1")])
TAGS = [
    "POSLog",
    "Transaction",
    "RetailStoreID",
    "WorkstationID",
    "SequenceNumber",
    "BusinessDayDate",
    "EndDateTime",
    "BeginDateTime",
    "RetailTransaction",
    "ControlTransaction",
    "LineItem",
    "Sale",
    "Return",
    "ItemID",
    "POSIdentity",
    "POSItemID",
    "Quantity",
    "TransactionLink",
    "ReasonCode",
    "TransactionStatus",
    "ActualSalesUnitPrice",
    "CurrencyCode",
    "Tender",
]
ATTRS = [
    "VoidFlag",
    "CancelFlag",
    "TrainingModeFlag",
    "UnitOfMeasureCode",
    "Units",
    "ReasonCode",
    "ItemType",
    "TransactionStatus",
]
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
HOSTILE_XML = [
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><POSLog>&lol2;</POSLog>',
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><POSLog>&xxe;</POSLog>',
    '<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd"><POSLog/>',
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><POSLog/>',
    '<POSLog xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd" parse="text"/></POSLog>',
    "<?xml-stylesheet href='http://127.0.0.1:9/x.xsl'?><POSLog/>",
    "<POSLog><![CDATA[<Transaction>]]></POSLog>",
    "<POSLog><!-- <Transaction> --></POSLog>",
    "",
    "<",
    "<POSLog>",
    "</POSLog>",
    "<POSLog></Transaction>",
    '<?xml version="1.0" encoding="x-unknown"?><POSLog/>',
    '<?xml version="1.0" encoding="utf-16"?><POSLog/>',
    "\ufeff<POSLog/>",
    "<a:POSLog xmlns:a='urn:a'><b:Transaction/></a:POSLog>",
]


@st.composite
def element(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(st.sampled_from(TAGS))
    prefix = draw(st.sampled_from(["", "", "poslog:", "x:"]))
    attrs = "".join(
        f" {name}={quoteattr(value)}"
        for name, value in draw(
            st.dictionaries(st.sampled_from(ATTRS), hostile_text().map(_xml_safe), max_size=2)
        ).items()
    )
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        inner = escape(_xml_safe(draw(hostile_text())))
    else:
        inner = "".join(draw(st.lists(element(depth + 1), max_size=3)))
    return f"<{prefix}{tag}{attrs}>{inner}</{prefix}{tag}>"


def _xml_safe(text: str) -> str:
    """Drop characters XML 1.0 cannot carry at all (the generator wants well-formed files here)."""
    return NOT_XML.sub("", text)


def document(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" '
        f'xmlns:poslog="http://www.nrf-arts.org/IXRetail/namespace/" xmlns:x="urn:vendor">{body}</POSLog>'
    )


@st.composite
def damaged_real(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.integers(0, 3))
        if action == 0:
            data[at] = draw(st.integers(0, 255))
        elif action == 1:
            data[at:at] = draw(
                st.sampled_from([b"<", b">", b"&", b"]]>", b"</Transaction>", b"<Transaction>", b"\x00"])
            )
        elif action == 2:
            del data[at : at + draw(st.integers(1, 200))]
        else:
            del data[at:]
    return bytes(data)


def files() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(element(), max_size=5).map(lambda parts: document("".join(parts)).encode()),
        damaged_real(),
        st.sampled_from(HOSTILE_XML).map(str.encode),
        st.integers(1, 60_000).map(lambda depth: ("<POSLog>" + "<Transaction>" * depth).encode()),
        st.binary(max_size=300),
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-poslog")


@pytest.fixture(scope="module")
def outbox(folder: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(folder / "outbox.sqlite")
    yield box
    box.close()


def read_all(path: Path, folder: Path) -> tuple[list[Any], str | None]:
    chunks: list[Any] = []
    try:
        with bounded("read_poslog"):
            for chunk in read_poslog(path, context(folder), source="fuzz", chunk_rows=5):
                chunks.append(chunk)
    except MalformedFile as exc:
        assert str(exc).strip()
        return chunks, str(exc)
    for issue in (i for c in chunks for i in c.issues):
        assert issue.code and issue.message and "transaction" in issue.source_ref, issue
    return chunks, None


@given(blob=files())
@FUZZ
def test_a_hostile_poslog_file_is_read_or_refused_with_a_reason(folder: Path, blob: bytes) -> None:
    Counter.add("poslog file")
    path = folder / "log.xml"
    path.write_bytes(blob)
    _chunks, refused = read_all(path, folder)
    if b"<!DOCTYPE" in blob or b"<!ENTITY" in blob:
        assert refused is not None and ("DTD" in refused or "entit" in refused or "not well-formed" in refused)


def good_transaction(n: int) -> str:
    return (
        f"<Transaction><RetailStoreID>1</RetailStoreID><WorkstationID>9</WorkstationID>"
        f"<SequenceNumber>{n}</SequenceNumber><BusinessDayDate>2026-11-20</BusinessDayDate>"
        f"<EndDateTime>2026-11-20T10:00:00</EndDateTime><RetailTransaction><LineItem><SequenceNumber>1"
        f"</SequenceNumber><Sale><ItemID>SKU-1</ItemID><Quantity>2</Quantity></Sale></LineItem>"
        f"</RetailTransaction></Transaction>"
    )


@given(
    hostile=st.lists(element(), min_size=1, max_size=5), positions=st.lists(st.integers(0, 5), min_size=1, max_size=3)
)
@FUZZ
def test_valid_transactions_beside_hostile_ones_are_all_captured(
    folder: Path, outbox: Outbox, hostile: list[str], positions: list[int]
) -> None:
    Counter.add("poslog file (neighbours)")
    parts = list(hostile)
    good = set()
    for n, at in enumerate(sorted(set(positions)), start=900_000):
        good.add(f"1-9-{n}-20261120")
        parts.insert(min(at, len(parts)), good_transaction(n))
    path = folder / "mixed.xml"
    path.write_text(document("".join(parts)), encoding="utf-8")
    chunks, refused = read_all(path, folder)
    assert refused is None, refused  # well-formed XML without a DTD is never refused whole
    captured = {m.pos_transaction_id for c in chunks for m in c.movements}
    assert good <= captured, f"valid transactions lost: {good - captured}"
    sink = OutboxSink("poslog", outbox, ITEMS, lambda _n: None)
    for chunk in chunks:  # what was read must also be storable: a hostile value never poisons the batch
        sink.submit(Batch(movements=chunk.movements, issues=chunk.issues, voids=chunk.voids))
