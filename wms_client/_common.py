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

from collections.abc import Sequence

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
