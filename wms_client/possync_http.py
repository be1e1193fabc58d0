"""Client for the possync WMS protocol v1 over httpx (``wms.kind = "possync"``).

Invariants:
- One ``httpx.Client`` per agent (connection reuse); redirects are never followed, so the bearer
  token is only ever sent to the configured WMS address.
- Every exchange goes through ``outcomes``: the client never raises for what the server does.
- The token is read through the secret lookup at start and again on ``refresh_credentials``
  (after a rotation), and never logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx
from pydantic import Field

from agent.domain import (
    EventResult,
    ItemRecord,
    Movement,
    Outcome,
    PushReport,
    Snapshot,
    StockLevel,
)
from wms_client.base import (
    MAX_BATCH,
    Duration,
    SecretLookup,
    SecretRef,
    WmsAuthError,
    WmsSettings,
    WmsUnavailable,
    register,
)
from wms_client.outcomes import Verdict, parse_retry_after, verdict_for_status

__all__ = ["MAX_BATCH", "Duration", "PossyncWmsClient", "PossyncWmsSettings", "WmsSettings", "build"]

USER_AGENT = "possync-agent"


class PossyncWmsSettings(WmsSettings):
    """``[wms]`` for the possync WMS protocol."""

    kind: Literal["possync"] = "possync"
    url: str = Field(pattern=r"^https?://[^\s/]+.*$")
    token: SecretRef
    verify_tls: bool = True
    ca_file: str | None = None


class PossyncWmsClient:
    """The possync WMS protocol v1 over one reused httpx client."""

    def __init__(
        self,
        settings: PossyncWmsSettings,
        store_id: str,
        secrets: SecretLookup,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Build the client; the token is read now and again on ``refresh_credentials``."""
        self.settings = settings
        self.store_id = store_id
        self._secrets = secrets
        self._token = secrets(settings.token)
        verify: bool | str = settings.ca_file or settings.verify_tls
        self._http = httpx.Client(
            base_url=settings.url.rstrip("/"),
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0)),
            follow_redirects=False,
            verify=verify,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    # -- delivery ----------------------------------------------------------------------------

    def push(self, batch: Sequence[Movement]) -> PushReport:
        """POST the batch; every event ends as accepted, duplicate, rejected or retry."""
        if not batch:
            return PushReport(results=[])
        body = '{"events":[' + ",".join(m.to_json() for m in batch) + "]}"
        started = time.monotonic()
        try:
            response = self._http.post(
                f"/v1/stores/{self.store_id}/movements",
                content=body.encode(),
                headers=self._headers({"Content-Type": "application/json"}),
            )
        except httpx.HTTPError as exc:
            return _retry_all(batch, f"WMS not reachable: {_describe(exc)}")
        latency = time.monotonic() - started
        verdict = verdict_for_status(response.status_code)
        if verdict is Verdict.PER_EVENT:
            return self._per_event(batch, response, latency)
        message = _server_message(response)
        if verdict is Verdict.AUTH:
            return PushReport(
                results=[],
                auth_failed=True,
                error=f"WMS refused the credentials (HTTP {response.status_code}): {message}",
                http_status=response.status_code,
                latency_s=latency,
            )
        if verdict is Verdict.RETRY:
            if 300 <= response.status_code < 400:
                message = (
                    f"WMS redirected to {response.headers.get('location', '?')}; possync does not "
                    "follow redirects, set wms.url to the final address"
                )
            return _retry_all(
                batch,
                f"WMS answered HTTP {response.status_code}: {message}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                http_status=response.status_code,
                latency=latency,
            )
        # A permanent refusal of the whole batch that names no event: find the event by splitting.
        if len(batch) > 1:
            return PushReport(
                results=[],
                split=True,
                error=f"WMS refused the batch (HTTP {response.status_code}): {message}",
                http_status=response.status_code,
                latency_s=latency,
            )
        return PushReport(
            results=[EventResult(batch[0].event_id, Outcome.REJECTED, f"HTTP_{response.status_code}", message)],
            http_status=response.status_code,
            latency_s=latency,
        )

    def _per_event(self, batch: Sequence[Movement], response: httpx.Response, latency: float) -> PushReport:
        try:
            payload = response.json()
            entries = payload["results"]
            by_id = {str(e["event_id"]): e for e in entries if isinstance(e, dict) and "event_id" in e}
        except (ValueError, KeyError, TypeError):
            return _retry_all(
                batch,
                "WMS answered 2xx with a body that is not a result list; the batch will be sent "
                "again (the WMS deduplicates)",
                http_status=response.status_code,
                latency=latency,
            )
        results = []
        for movement in batch:
            entry = by_id.get(movement.event_id)
            status = entry.get("status") if entry else None
            if status in (Outcome.ACCEPTED, Outcome.DUPLICATE) and entry is not None:
                results.append(EventResult(movement.event_id, Outcome(status), position=_position(entry.get("seq"))))
            elif status == Outcome.REJECTED and entry is not None:
                results.append(
                    EventResult(
                        movement.event_id,
                        Outcome.REJECTED,
                        str(entry.get("code") or "REJECTED"),
                        str(entry.get("message") or "rejected by the WMS without a reason"),
                    )
                )
            else:
                results.append(
                    EventResult(
                        movement.event_id,
                        Outcome.RETRY,
                        "NO_RESULT",
                        "the WMS answer did not include this event",
                    )
                )
        return PushReport(results=results, http_status=response.status_code, latency_s=latency)

    # -- reads -------------------------------------------------------------------------------

    def stock_snapshot(self) -> Snapshot:
        """Read every page of the store's stock snapshot, pinned to one version."""
        levels: list[StockLevel] = []
        token: str | None = None
        version: int | None = None
        as_of: datetime | None = None
        while True:
            params = {"page_size": "1000", **({"page_token": token} if token else {})}
            page = self._get_json(f"/v1/stores/{self.store_id}/stock", params)
            try:
                page_version = int(page["version"])
                if version is not None and page_version != version:
                    raise WmsUnavailable("the WMS snapshot changed version between pages")
                version = page_version
                as_of = as_of or datetime.fromisoformat(page["as_of"])
                for item in page["items"]:
                    on_hand = Decimal(str(item["on_hand"]))
                    allocated = Decimal(str(item.get("allocated", 0)))
                    available = item.get("available")
                    levels.append(
                        StockLevel(
                            sku=str(item["sku"]),
                            location=str(item["location"]),
                            on_hand=on_hand,
                            allocated=allocated,
                            available=Decimal(str(available)) if available is not None else None,
                        )
                    )
                token = page.get("next_page_token")
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise WmsUnavailable(f"the WMS stock snapshot is malformed: {exc}") from exc
            if not token:
                break
        assert version is not None and as_of is not None
        return Snapshot(store_id=self.store_id, version=version, as_of=as_of, levels=levels)

    def item_master(self) -> list[ItemRecord]:
        """Read every page of the item master."""
        items: list[ItemRecord] = []
        token: str | None = None
        while True:
            params = {"page_size": "1000", **({"page_token": token} if token else {})}
            page = self._get_json("/v1/items", params)
            try:
                for raw in page["items"]:
                    items.append(
                        ItemRecord(
                            sku=str(raw["sku"]),
                            description=str(raw.get("description", "")),
                            base_unit=str(raw.get("base_unit") or "EA"),
                            units={str(u): Decimal(str(f)) for u, f in dict(raw.get("units") or {}).items()},
                            barcodes=tuple(str(b) for b in raw.get("barcodes") or ()),
                            aliases=tuple(str(a) for a in raw.get("aliases") or ()),
                            status=str(raw.get("status") or "active"),
                        )
                    )
                token = page.get("next_page_token")
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise WmsUnavailable(f"the WMS item master is malformed: {exc}") from exc
            if not token:
                return items

    def ping(self) -> float:
        """GET /v1/health with credentials; return the round trip in seconds."""
        started = time.monotonic()
        self._get_json("/v1/health", {})
        return time.monotonic() - started

    def refresh_credentials(self) -> bool:
        """Re-read the token from its secret store; True if it changed."""
        token = self._secrets(self.settings.token)
        changed = token != self._token
        self._token = token
        return changed

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", **(extra or {})}

    def _get_json(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = self._http.get(path, params=params, headers=self._headers())
        except httpx.HTTPError as exc:
            raise WmsUnavailable(f"WMS not reachable: {_describe(exc)}") from exc
        verdict = verdict_for_status(response.status_code)
        if verdict is Verdict.AUTH:
            raise WmsAuthError(f"WMS refused the credentials (HTTP {response.status_code})")
        if verdict is not Verdict.PER_EVENT:
            raise WmsUnavailable(
                f"WMS answered HTTP {response.status_code}: {_server_message(response)}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        try:
            return response.json()
        except ValueError as exc:
            raise WmsUnavailable("WMS answered with a body that is not JSON") from exc


def _retry_all(
    batch: Sequence[Movement],
    message: str,
    *,
    retry_after: float | None = None,
    http_status: int | None = None,
    latency: float | None = None,
) -> PushReport:
    return PushReport(
        results=[EventResult(m.event_id, Outcome.RETRY, "TRANSIENT", message) for m in batch],
        retry_after=retry_after,
        error=message,
        http_status=http_status,
        latency_s=latency,
    )


def _position(value: Any) -> int | None:
    """Return the ledger position of an ack, or None if the WMS gave none (then it counts as in any snapshot)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(exc: httpx.HTTPError) -> str:
    kind = type(exc).__name__
    text = str(exc) or kind
    return text if kind in text else f"{kind}: {text}"


def _server_message(response: httpx.Response) -> str:
    """Return the server's own words about an error, short and single-line."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])[:300]
        if body.get("detail") is not None:
            return json.dumps(body["detail"])[:300]
    text = response.text.strip().replace("\n", " ")
    return text[:300] or response.reason_phrase


def build(settings: PossyncWmsSettings, store_id: str, secrets: SecretLookup) -> PossyncWmsClient:
    """Build a possync protocol client (the factory registered for ``wms.kind = "possync"``)."""
    return PossyncWmsClient(settings, store_id, secrets)


register("possync", PossyncWmsSettings, build)
