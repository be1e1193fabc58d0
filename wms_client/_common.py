"""Pieces shared by the clients for WMS products (Tryton, InvenTree): settings, HTTP client, reports.

Invariants:
- One ``httpx.Client`` per WMS client, created here with redirects off: credentials are only ever
  sent to the configured address.
- ``retry_all`` is the one way a product client says "nothing is known about these events": every
  event of the batch becomes ``retry``, and the resend is safe because the client looks each event
  up in the product before applying it.
- The module name starts with ``_`` so ``agent.kinds`` does not load it as a WMS kind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import httpx
from pydantic import Field

from agent.domain import EventResult, Movement, Outcome, PushReport
from wms_client.base import WmsSettings

USER_AGENT = "possync-agent"


class ProductWmsSettings(WmsSettings):
    """Keys every WMS-product kind adds to the shared ``[wms]`` keys: where it is and how to trust it."""

    url: str = Field(pattern=r"^https?://[^\s/]+.*$")
    verify_tls: bool = True
    ca_file: str | None = None


def http_client(settings: ProductWmsSettings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """Return the one reused HTTP client of a product WMS client (never follows redirects)."""
    verify: bool | str = settings.ca_file or settings.verify_tls
    return httpx.Client(
        base_url=settings.url.rstrip("/"),
        timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0)),
        follow_redirects=False,
        verify=verify,
        transport=transport,
        headers={"User-Agent": USER_AGENT},
    )


def retry_all(
    batch: Sequence[Movement],
    message: str,
    *,
    retry_after: float | None = None,
    http_status: int | None = None,
    latency: float | None = None,
    done: Sequence[EventResult] = (),
) -> PushReport:
    """Report ``done`` results as they are and every other event of the batch as ``retry``."""
    known = {r.event_id for r in done}
    results = list(done) + [
        EventResult(m.event_id, Outcome.RETRY, "TRANSIENT", message) for m in batch if m.event_id not in known
    ]
    order = {m.event_id: i for i, m in enumerate(batch)}
    results.sort(key=lambda r: order.get(r.event_id, len(order)))
    return PushReport(
        results=results, retry_after=retry_after, error=message, http_status=http_status, latency_s=latency
    )


def describe(exc: httpx.HTTPError) -> str:
    """Return a short description of a network error that names its kind."""
    kind = type(exc).__name__
    text = str(exc) or kind
    return text if kind in text else f"{kind}: {text}"


def redirect_message(response: httpx.Response) -> str:
    """Explain a redirect we refuse to follow, with what to fix."""
    return (
        f"the WMS redirected to {response.headers.get('location', '?')}; possync does not follow "
        "redirects (credentials must not travel), set wms.url to the final address"
    )


class LedgerOrder:
    """Orders pushes and snapshots for a WMS that keeps no ledger version of its own.

    Pushes and snapshot reads of one client never overlap (one lock), and each gets a tick from a
    strictly increasing millisecond counter: a push's tick is taken after it finished, a snapshot's
    before it starts reading. So an event whose ack ``position`` is at or below a snapshot's
    ``version`` finished before that snapshot began (it is in it), and one above it started after
    the snapshot ended (it is not). This is exact for possync's own events, which is what the
    store stock view needs; the cost is that a long snapshot read holds delivery back meanwhile.
    """

    def __init__(self) -> None:
        """Start the counter at the wall clock."""
        self._exclusive = threading.Lock()
        self._tick_lock = threading.Lock()
        self._last = 0

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every other push or snapshot of this client."""
        with self._exclusive:
            yield

    def tick(self) -> int:
        """Return the next position: milliseconds since the epoch, strictly increasing."""
        with self._tick_lock:
            self._last = max(int(time.time() * 1000), self._last + 1)
            return self._last

    def stamp(self, report: PushReport) -> PushReport:
        """Give every accepted or duplicate result of ``report`` a fresh position."""
        position = self.tick()
        results = [
            replace(r, position=position) if r.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE) else r
            for r in report.results
        ]
        return replace(report, results=results)
