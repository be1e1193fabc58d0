"""One harness per WMS kind, so the same conformance scenarios run against every client.

Each harness starts a real server on 127.0.0.1 (the sandbox WMS for ``possync``, trytond for
``tryton``, the InvenTree API double for ``inventree``) and knows how to build its client, how to
ask the product how many times it applied an event, and how to make it throttle.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from tests.support.helpers import ITEMS_CSV
from tests.support.inventree_fake import InvenTreeFake
from tests.support.tryton import DB, POSSYNC_PASSWORD, POSSYNC_USER, TrytonServer
from wms_client.base import WmsClient
from wms_client.inventree import InvenTreeWmsClient, InvenTreeWmsSettings
from wms_client.possync_http import PossyncWmsClient, PossyncWmsSettings
from wms_client.sandbox.server import SandboxServer
from wms_client.tryton import TrytonWmsClient, TrytonWmsSettings

KINDS = ["possync", "tryton", "inventree"]


class Harness(Protocol):
    kind: str
    url: str

    def client(
        self, secret: str | None = None, transport: httpx.BaseTransport | None = None, url: str | None = None
    ) -> WmsClient: ...

    def applied(self, event_id: str) -> int: ...

    def throttle(self, retry_after: int) -> bool: ...


class PossyncHarness:
    kind = "possync"

    def __init__(self, sandbox: SandboxServer, token: str) -> None:
        self.sandbox, self.token, self.url = sandbox, token, sandbox.url

    def client(self, secret=None, transport=None, url=None) -> WmsClient:  # type: ignore[no-untyped-def]
        settings = PossyncWmsSettings(url=url or self.url, token="env:X", timeout_s=5)
        return PossyncWmsClient(settings, "S001", lambda _r: secret or self.token, transport=transport)

    def applied(self, event_id: str) -> int:
        return sum(1 for r in self.sandbox.ledger.ledger_rows(0, 100_000) if r["event_id"] == event_id)

    def throttle(self, retry_after: int) -> bool:
        httpx.post(
            f"{self.url}/_sandbox/faults",
            json={"throttle_rate": 1.0, "retry_after_s": retry_after},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return True


class TrytonHarness:
    kind = "tryton"

    def __init__(self, server: TrytonServer) -> None:
        self.server, self.url = server, server.url

    def client(self, secret=None, transport=None, url=None) -> WmsClient:  # type: ignore[no-untyped-def]
        settings = TrytonWmsSettings(
            url=url or self.url,
            database=DB,
            user=POSSYNC_USER,
            password="env:X",
            warehouse="S001",
            customer="POS",
            damaged_location="S001-DMG",
            case_attribute="case_qty",
            timeout_s=5,
        )
        return TrytonWmsClient(settings, "S001", lambda _r: secret or POSSYNC_PASSWORD, transport=transport)

    def applied(self, event_id: str) -> int:
        admin = self.server.rpc()
        try:
            return sum(1 for s in admin.shipments_by_reference().get(event_id, []) if s["state"] == "done")
        finally:
            admin.close()

    def throttle(self, retry_after: int) -> bool:
        raise AssertionError("trytond only throttles failed logins; use the throttling_wms fixture")


class InvenTreeHarness:
    kind = "inventree"

    def __init__(self, fake: InvenTreeFake) -> None:
        self.fake, self.url = fake, fake.url

    def client(self, secret=None, transport=None, url=None) -> WmsClient:  # type: ignore[no-untyped-def]
        settings = InvenTreeWmsSettings(
            url=url or self.url,
            token="env:X",
            location="S001",
            damaged_location="S001-DMG",
            case_parameter="case_qty",
            timeout_s=5,
        )
        return InvenTreeWmsClient(settings, "S001", lambda _r: secret or self.fake.token, transport=transport)

    def applied(self, event_id: str) -> int:
        return self.fake.applied(event_id)

    def throttle(self, retry_after: int) -> bool:
        self.fake.throttle(retry_after)
        return True


@pytest.fixture(params=KINDS)
def wms(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """A running WMS of each kind with the sample items, and its harness."""
    yield from _harness(request.param, request, tmp_path)


# Tryton has no API throttling of its own (only failed logins), so it has no 429 case to conform to.
@pytest.fixture(params=[k for k in KINDS if k != "tryton"])
def throttling_wms(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """A running WMS of each kind that throttles API calls with 429 and Retry-After."""
    yield from _harness(request.param, request, tmp_path)


def _harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if kind == "possync":
        token = "conformance-token"
        sandbox = SandboxServer(tmp_path / "wms", ITEMS_CSV, token, port=0)
        sandbox.start()
        try:
            yield PossyncHarness(sandbox, token)
        finally:
            sandbox.stop()
    elif kind == "tryton":
        yield TrytonHarness(request.getfixturevalue("tryton"))
    else:
        fake = InvenTreeFake.from_items_csv(ITEMS_CSV)
        fake.start()
        try:
            yield InvenTreeHarness(fake)
        finally:
            fake.stop()
