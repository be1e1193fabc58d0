"""Narrow unit tests of the possync protocol client's outcome table (httpx.MockTransport)."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from agent.domain import Kind, Outcome, make_event_id
from tests.unit.test_domain import movement
from wms_client.base import WmsAuthError, WmsUnavailable
from wms_client.outcomes import parse_retry_after
from wms_client.possync_http import PossyncWmsClient, PossyncWmsSettings

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, token: str = "t0k3n-abc") -> PossyncWmsClient:
    settings = PossyncWmsSettings(url="http://wms.test", token="env:X")
    return PossyncWmsClient(settings, "S001", lambda _ref: token, transport=httpx.MockTransport(handler))


def batch(n: int = 3) -> list:
    return [movement(event_id=make_event_id("S001", "T", i, Kind.SALE), line_no=i) for i in range(1, n + 1)]


def test_per_event_results_and_request_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        events = json.loads(request.content)["events"]
        statuses = ["accepted", "duplicate", "rejected"]
        return httpx.Response(
            200,
            json={
                "results": [
                    {
                        "event_id": e["event_id"],
                        "status": s,
                        **({"code": "UNKNOWN_SKU", "message": "no such SKU"} if s == "rejected" else {}),
                    }
                    for e, s in zip(events, statuses, strict=True)
                ]
            },
        )

    report = client(handler).push(batch())
    assert [r.outcome for r in report.results] == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.REJECTED]
    assert report.results[2].code == "UNKNOWN_SKU" and report.results[2].message == "no such SKU"
    (request,) = seen
    assert request.url.path == "/v1/stores/S001/movements"
    assert request.headers["authorization"] == "Bearer t0k3n-abc"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_transient_statuses_retry_the_whole_batch(status: int) -> None:
    report = client(lambda r: httpx.Response(status, headers={"Retry-After": "7"}, json={"message": "busy"})).push(
        batch()
    )
    assert {r.outcome for r in report.results} == {Outcome.RETRY}
    assert report.retry_after == 7 and "busy" in (report.error or "")


def test_retry_after_as_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert parse_retry_after(format_datetime(later, usegmt=True)) == pytest.approx(120, abs=2)
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_pause(status: int) -> None:
    report = client(lambda r: httpx.Response(status, json={"message": "token expired"})).push(batch())
    assert report.auth_failed and report.results == [] and "token expired" in (report.error or "")


def test_whole_batch_4xx_asks_for_a_split_then_rejects_a_single_event() -> None:
    handler = lambda r: httpx.Response(422, json={"message": "quantity field malformed"})  # noqa: E731
    assert client(handler).push(batch(2)).split
    (single,) = client(handler).push(batch(1)).results
    assert single.outcome is Outcome.REJECTED and single.code == "HTTP_422" and "malformed" in (single.message or "")


def test_uncertain_answers_retry_because_resending_is_safe() -> None:
    not_json = client(lambda r: httpx.Response(200, text="<html>proxy error</html>")).push(batch(2))
    assert {r.outcome for r in not_json.results} == {Outcome.RETRY}

    def partial(request: httpx.Request) -> httpx.Response:
        first = json.loads(request.content)["events"][0]["event_id"]
        return httpx.Response(200, json={"results": [{"event_id": first, "status": "accepted"}]})

    report = client(partial).push(batch(3))
    assert [r.outcome for r in report.results] == [Outcome.ACCEPTED, Outcome.RETRY, Outcome.RETRY]


def test_network_errors_retry() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    report = client(boom).push(batch(2))
    assert {r.outcome for r in report.results} == {Outcome.RETRY} and "refused" in (report.error or "")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    assert {r.outcome for r in client(slow).push(batch(1)).results} == {Outcome.RETRY}


def test_redirects_are_not_followed_so_the_token_stays_home() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(307, headers={"Location": "http://evil.example/v1/x"})

    report = client(handler).push(batch(1))
    assert hosts == ["wms.test"]
    assert report.results[0].outcome is Outcome.RETRY and "does not follow redirects" in (report.error or "")


def test_snapshot_reads_every_page_and_detects_a_moving_version() -> None:
    pages = {
        None: {
            "version": 7,
            "as_of": "2026-11-20T10:00:00+00:00",
            "items": [{"sku": "A", "location": "S001", "on_hand": "3", "allocated": "1", "available": "2"}],
            "next_page_token": "p2",
        },
        "p2": {
            "version": 7,
            "as_of": "2026-11-20T10:00:00+00:00",
            "items": [{"sku": "B", "location": "S001", "on_hand": "0.5"}],
            "next_page_token": None,
        },
    }
    snap = client(lambda r: httpx.Response(200, json=pages[r.url.params.get("page_token")])).stock_snapshot()
    assert snap.version == 7 and [level.sku for level in snap.levels] == ["A", "B"]
    assert str(snap.levels[1].on_hand) == "0.5"
    pages["p2"]["version"] = 8
    with pytest.raises(WmsUnavailable, match="changed version"):
        client(lambda r: httpx.Response(200, json=pages[r.url.params.get("page_token")])).stock_snapshot()


def test_item_master_and_read_errors() -> None:
    body = {
        "items": [
            {"sku": "A", "base_unit": "EA", "units": {"EA": "1", "CS": "12"}, "barcodes": ["0012"], "aliases": ["AA"]}
        ],
        "next_page_token": None,
    }
    (item,) = client(lambda r: httpx.Response(200, json=body)).item_master()
    assert item.units["CS"] == 12 and item.barcodes == ("0012",) and item.aliases == ("AA",)
    with pytest.raises(WmsAuthError):
        client(lambda r: httpx.Response(401)).item_master()
    with pytest.raises(WmsUnavailable) as caught:
        client(lambda r: httpx.Response(429, headers={"Retry-After": "3"})).item_master()
    assert caught.value.retry_after == 3
    with pytest.raises(WmsUnavailable, match="malformed"):
        client(lambda r: httpx.Response(200, json={"items": [{"no_sku": 1}]})).item_master()


def test_refresh_credentials_rereads_the_secret() -> None:
    tokens = iter(["old", "new"])
    settings = PossyncWmsSettings(url="http://wms.test", token="env:X")
    seen: list[str] = []
    wms = PossyncWmsClient(
        settings,
        "S001",
        lambda _ref: next(tokens),
        transport=httpx.MockTransport(
            lambda r: seen.append(r.headers["authorization"]) or httpx.Response(200, json={"status": "ok"})
        ),
    )
    wms.ping()
    assert wms.refresh_credentials() is True
    wms.ping()
    assert seen == ["Bearer old", "Bearer new"]
