"""rest_poll against a POS REST API served on 127.0.0.1, into a real outbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from agent.capture import OutboxSink
from agent.domain import ItemRecord
from agent.mapping import ItemMaster
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from pos_adapters.base import SourceContext
from pos_adapters.rest_poll import RestPollSettings, RestPollSource
from tests.support.fake_pos import BASE_TIME, FakeShopify

TOKEN = "shpat_test_token_0123456789"
ITEMS = ItemMaster([ItemRecord(sku=s, units={"EA": Decimal(1)}) for s in ("SKU-1001", "SKU-1002", "SKU-2001")])


@pytest.fixture
def shop() -> Iterator[FakeShopify]:
    fake = FakeShopify(TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open_file(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def source(tmp_path: Path, url: str, **extra: Any) -> RestPollSource:
    settings = RestPollSettings.model_validate(
        {
            "name": "shop",
            "kind": "rest_poll",
            "url": url,
            "preset": "shopify-orders",
            "auth": {"type": "header", "header": "X-Shopify-Access-Token", "token": "env:SHOP_TOKEN"},
            "page_size": 2,
            "overlap": "2m",
            "initial_lookback": "30d",
            **extra,
        }
    )
    ctx = SourceContext(
        store_id="S001",
        timezone=ZoneInfo("America/Chicago"),
        base_dir=tmp_path,
        data_dir=tmp_path,
        location="S001",
        secrets=lambda ref: TOKEN if ref == "env:SHOP_TOKEN" else "wrong",
    )
    return RestPollSource(settings, ctx)


def poll(src: RestPollSource, outbox: Outbox) -> None:
    with httpx.Client() as http:
        src.poll_once(http, OutboxSink(src.name, outbox, ITEMS, lambda _n: None), threading.Event())


def stock(outbox: Outbox) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    with outbox.db.read() as conn:
        for sku, delta in conn.exec_driver_sql("SELECT sku, delta FROM movement"):
            totals[sku] = totals.get(sku, Decimal(0)) + Decimal(delta)
    return {k: v for k, v in totals.items() if v}


def test_orders_refunds_and_cancellations_become_movements(tmp_path: Path, shop: FakeShopify, outbox: Outbox) -> None:
    shop.add_order(1, [(11, "SKU-1001", 2, "10.00"), (12, "SKU-2001", 1, "5.00")])
    shop.add_order(2, [(21, "SKU-1002", 3, "7.00")])
    shop.add_order(3, [(31, "SKU-1001", 1, "10.00")], location_id=2002)  # another store's order
    src = source(tmp_path, shop.url, location_id="1001")
    poll(src, outbox)
    assert src.health.state == "ok", src.health.last_error
    assert stock(outbox) == {"SKU-1001": -2, "SKU-2001": -1, "SKU-1002": -3}
    shop.refund(1, 900, [(901, 11, 1, "return"), (902, 12, 1, "no_restock")])  # the sock was not brought back
    shop.cancel(2)  # captured before: reversed
    shop.add_order(4, [(41, "SKU-1001", 5, "10.00")])
    shop.cancel(4)  # cancelled before we ever saw it: moves nothing
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -1, "SKU-2001": -1}
    assert outbox.counts().exceptions_open == 0


def test_paging_duplicates_and_pages_that_change_between_polls_neither_lose_nor_double(
    tmp_path: Path, shop: FakeShopify, outbox: Outbox
) -> None:
    for n in range(1, 8):
        shop.add_order(n, [(n * 10, "SKU-1001", 1, "1.00")])
    shop.duplicate_boundary = True  # each page also repeats the next page's first order
    src = source(tmp_path, shop.url)
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -7}
    assert sum(1 for q in shop.requests if "page_info" in q) == 3  # pages 2-4 through the Link header
    # Between polls, an old order changes (moves to the end of the list) and new ones arrive.
    shop.refund(2, 500, [(501, 20, 1, "return")])
    shop.add_order(8, [(80, "SKU-1002", 2, "1.00")])
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -6, "SKU-1002": -2}
    since = [q["updated_at_min"][0] for q in shop.requests if "updated_at_min" in q]
    assert since[1] > since[0], "the second poll asked from the stored mark, not from the start"


def test_throttling_is_waited_out(tmp_path: Path, shop: FakeShopify, outbox: Outbox) -> None:
    shop.add_order(1, [(11, "SKU-1001", 1, "1.00")])
    shop.throttle_next = 2
    src = source(tmp_path, shop.url)
    poll(src, outbox)
    assert src.health.state == "ok" and stock(outbox) == {"SKU-1001": -1}


def test_a_pos_that_is_down_is_reported_and_caught_up_later(tmp_path: Path, shop: FakeShopify, outbox: Outbox) -> None:
    shop.add_order(1, [(11, "SKU-1001", 1, "1.00")])
    port = shop.port
    shop.stop()
    src = source(tmp_path, shop.url)
    poll(src, outbox)
    assert src.health.state == "error" and "POS API not reachable" in (src.health.last_error or "")
    assert outbox.cursor("shop", "poll") is None  # nothing moved the mark
    back = FakeShopify(TOKEN, port=port)
    back.orders, back.clock = shop.orders, shop.clock
    back.start()
    try:
        poll(src, outbox)
    finally:
        back.stop()
    assert src.health.state == "ok" and stock(outbox) == {"SKU-1001": -1}


def test_refused_credentials_and_foreign_next_links(tmp_path: Path, shop: FakeShopify, outbox: Outbox) -> None:
    shop.token = "rotated"
    src = source(tmp_path, shop.url)
    poll(src, outbox)
    assert src.health.last_error == "the POS API refused possync's credentials (HTTP 401)"
    shop.token = TOKEN
    for n in range(1, 4):
        shop.add_order(n, [(n * 10, "SKU-1001", 1, "1.00")])
    shop.next_host = "collector.example:80"
    poll(src, outbox)
    assert "credentials only go to" in (src.health.last_error or "")
    mark = outbox.cursor("shop", "poll")
    assert mark is not None and datetime.fromisoformat(mark["since"]) < BASE_TIME  # not moved: page 2 was never read
    assert stock(outbox) == {"SKU-1001": -2}  # the first page is kept


def test_a_bad_record_is_an_exception_and_its_neighbours_are_captured(
    tmp_path: Path, shop: FakeShopify, outbox: Outbox
) -> None:
    shop.add_order(1, [(11, "SKU-1001", 1, "1.00")])
    broken = shop.add_order(2, [(21, "SKU-1001", 1, "1.00")])
    broken["line_items"][0]["quantity"] = "lots"
    shop.add_order(3, [(31, "SKU-2001", 1, "1.00")])
    src = source(tmp_path, shop.url)
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -1, "SKU-2001": -1}
    (issue,) = ExceptionQueue(outbox.db).list()
    assert issue.source_ref.startswith("shop record 2") and "quantity" in issue.message


def test_generic_mapping_with_an_opaque_page_cursor(tmp_path: Path, outbox: Outbox) -> None:
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    sales = [
        {
            "id": f"T{n}",
            "at": f"2026-11-20T10:0{n}:00-06:00",
            "till": "R1",
            "type": "SALE" if n != 3 else "REFUND",
            "items": [{"code": "SKU-1001", "n": 1}],
        }
        for n in range(1, 6)
    ]
    seen: list[str] = []

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlsplit

            cursor = parse_qs(urlsplit(self.path).query).get("after", ["0"])[0]
            seen.append(cursor)
            start = int(cursor)
            body = json.dumps(
                {"data": sales[start : start + 2], "meta": {"next": str(start + 2) if start + 2 < len(sales) else None}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = RestPollSource(
            RestPollSettings.model_validate(
                {
                    "name": "generic",
                    "kind": "rest_poll",
                    "url": f"http://127.0.0.1:{server.server_address[1]}/sales",
                    "cursor": "page",
                    "cursor_param": "after",
                    "next_cursor": "meta.next",
                    "records": "data",
                    "page_size_param": "limit",
                    "page_size": 2,
                    "fields": {
                        "transaction_id": "id",
                        "occurred_at": "at",
                        "terminal_id": "till",
                        "kind": "type",
                        "lines": "items",
                    },
                    "line_fields": {"item": "code", "quantity": "n"},
                    "kinds": {"SALE": "sale", "REFUND": "return"},
                }
            ),
            SourceContext("S001", ZoneInfo("America/Chicago"), tmp_path, tmp_path, "S001"),
        )
        with httpx.Client() as http:
            src.poll_once(http, OutboxSink("generic", outbox, ITEMS, lambda _n: None), threading.Event())
            assert stock(outbox) == {"SKU-1001": -3}
            assert outbox.cursor("generic", "poll") == {"cursor": "4"}
            src.poll_once(http, OutboxSink("generic", outbox, ITEMS, lambda _n: None), threading.Event())
        assert seen == ["0", "2", "4", "4"] and stock(outbox) == {"SKU-1001": -3}
    finally:
        server.shutdown()
        server.server_close()


class LinkedSales:
    """A POS API that pages with ``Link: <...>; rel="next"`` and answers 429 on request."""

    def __init__(self) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.sales: list[dict[str, Any]] = []
        self.seen: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self.throttle = False  # answer every request 429
        self.throttle_next = 0  # answer this many more requests 429
        self.retry_after = "30"
        owner = self

        class Api(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.seen.append(self.path)
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                owner.times.append(time.monotonic())
                if owner.throttle or owner.throttle_next > 0:
                    owner.throttle_next -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", owner.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(parse_qs(urlsplit(self.path).query).get("from", ["0"])[0])
                page = owner.sales[start : start + 2]
                body = json.dumps({"data": page}).encode()
                self.send_response(200)
                nxt = start + len(page)
                self.send_header("Link", f'<{owner.url}?from={nxt}>; rel="next"') if page else None
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sales"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, n: int) -> None:
        self.sales.append(
            {"id": f"L{n}", "at": "2026-11-20T10:00:00-06:00", "type": "SALE", "items": [{"code": "SKU-1001", "n": 1}]}
        )

    def source(self, tmp_path: Path, auth: dict[str, str] | None = None) -> RestPollSource:
        settings = {
            "name": "linked",
            "kind": "rest_poll",
            "url": self.url,
            "cursor": "page",
            "records": "data",
            "fields": {"transaction_id": "id", "occurred_at": "at", "kind": "type", "lines": "items"},
            "line_fields": {"item": "code", "quantity": "n"},
            "kinds": {"SALE": "sale"},
            "auth": auth or {"type": "none"},
        }
        ctx = SourceContext(
            "S001", ZoneInfo("America/Chicago"), tmp_path, tmp_path, "S001", secrets=POS_SECRETS.__getitem__
        )
        return RestPollSource(RestPollSettings.model_validate(settings), ctx)


@pytest.fixture
def linked() -> Iterator[LinkedSales]:
    api = LinkedSales()
    yield api
    api.server.shutdown()


def test_a_link_header_cursor_is_followed_across_polls(tmp_path: Path, outbox: Outbox, linked: LinkedSales) -> None:
    for n in range(3):
        linked.add(n)
    src = linked.source(tmp_path)
    sink = OutboxSink("linked", outbox, ITEMS, lambda _n: None)
    with httpx.Client() as http:
        src.poll_once(http, sink, threading.Event())
        assert stock(outbox) == {"SKU-1001": -3}
        assert outbox.cursor("linked", "poll") == {"cursor": f"{linked.url}?from=3"}
        linked.add(3)
        src.poll_once(http, sink, threading.Event())
    assert stock(outbox) == {"SKU-1001": -4}
    # The second poll asks for the stored next-page URL itself, not ?cursor=<URL>.
    assert linked.seen == ["/sales?limit=100", "/sales?from=2", "/sales?from=3", "/sales?from=3", "/sales?from=4"]
    assert not any("cursor=" in path for path in linked.seen)


def test_a_throttled_poll_does_not_hold_up_shutdown(tmp_path: Path, outbox: Outbox, linked: LinkedSales) -> None:
    import time

    linked.throttle = True  # Retry-After: 30
    src = linked.source(tmp_path)
    stop = threading.Event()
    thread = threading.Thread(target=src.run, args=(OutboxSink("linked", outbox, ITEMS, lambda _n: None), stop))
    thread.start()
    deadline = time.monotonic() + 10
    while not linked.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert linked.seen, "the source never polled"
    asked_to_stop = time.monotonic()
    stop.set()
    src.wake()  # as the agent's stop does
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - asked_to_stop < 3


def test_a_record_stamped_in_the_future_does_not_push_the_mark_past_now(
    tmp_path: Path, shop: FakeShopify, outbox: Outbox
) -> None:
    from datetime import UTC, timedelta

    shop.clock = datetime.now(UTC) + timedelta(days=30)  # the POS's clock runs a month ahead
    shop.add_order(1, [(11, "SKU-1001", 1, "1.00")])
    src = source(tmp_path, shop.url)
    before = datetime.now(UTC)
    poll(src, outbox)
    mark = outbox.cursor("shop", "poll")
    assert mark is not None and datetime.fromisoformat(mark["since"]) <= datetime.now(UTC)
    assert datetime.fromisoformat(mark["since"]) >= before - timedelta(seconds=1)
    shop.clock = datetime.now(UTC) - timedelta(seconds=30)  # the clock is fixed; a sale made just now
    shop.add_order(2, [(21, "SKU-1002", 2, "1.00")])
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -1, "SKU-1002": -2}, "the next sale was not taken for already read"


def test_a_poll_cut_short_by_max_pages_goes_on_from_where_it_stopped(
    tmp_path: Path, shop: FakeShopify, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(1, 10):
        shop.add_order(n, [(n * 10, "SKU-1001", 1, "1.00")])
    src = source(tmp_path, shop.url, max_pages=2, overlap="0s")  # 2 orders a page: 4 of 9 per poll
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -4}
    assert "stopped after max_pages = 2 with more pages waiting" in caplog.text
    poll(src, outbox)
    poll(src, outbox)
    assert stock(outbox) == {"SKU-1001": -9}, "the backlog is worked through, nothing skipped or doubled"


POS_SECRETS = {"keyring:pos/token": "tok-123", "keyring:pos/password": "pa:ss"}


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"type": "bearer", "token": "keyring:pos/token"}, "authorization", "Bearer tok-123"),
        ({"type": "header", "header": "X-Api-Key", "token": "keyring:pos/token"}, "x-api-key", "tok-123"),
        (
            {"type": "basic", "username": "store1", "password": "keyring:pos/password"},
            "authorization",
            "Basic c3RvcmUxOnBhOnNz",  # base64 of store1:pa:ss
        ),
        ({"type": "none"}, "authorization", None),
    ],
    ids=["bearer", "api-key-header", "basic", "none"],
)
def test_each_auth_type_sends_its_header_with_the_secret_from_the_store(
    tmp_path: Path, outbox: Outbox, linked: LinkedSales, auth: dict[str, str], header: str, value: str | None
) -> None:
    src = linked.source(tmp_path, auth)
    with httpx.Client() as http:
        src.poll_once(http, OutboxSink("linked", outbox, ITEMS, lambda _n: None), threading.Event())
    assert src.health.state == "ok", src.health.last_error
    assert linked.headers[0].get(header) == value


def test_retry_after_is_waited_for_as_long_as_the_pos_asks(tmp_path: Path, outbox: Outbox, linked: LinkedSales) -> None:
    linked.throttle_next, linked.retry_after = 2, "0.6"
    src = linked.source(tmp_path)
    with httpx.Client() as http:
        src.poll_once(http, OutboxSink("linked", outbox, ITEMS, lambda _n: None), threading.Event())
    assert src.health.state == "ok", src.health.last_error
    gaps = [b - a for a, b in zip(linked.times, linked.times[1:], strict=False)]
    assert len(linked.times) == 3 and all(gap >= 0.6 for gap in gaps), gaps
