"""Agent status: counts from the outbox, live state from the running agent, and the colour.

``evaluate`` is the single state machine (green, amber, red, grey) that the CLI, the status API
and the tray use; it is pure and unit-tested over every state.
"""

from __future__ import annotations

import itertools
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outbox.queue import Counts

HEARTBEAT_STALE_S = 20.0
GROWING_MINUTES = 5  # pending rose in each of this many consecutive minutes -> "backlog growing"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The configured promises the colour is judged against."""

    sla_s: float
    offline_alert_after_s: float
    disk_min_free_mb: float
    drift_threshold: int = 0


def evaluate(
    counts: Counts,
    live: dict[str, Any],
    thresholds: Thresholds,
    now: float,
    disk_free_mb: float | None,
    history: list[dict[str, Any]] | None = None,
) -> tuple[str, list[str]]:
    """Return the state colour and the reasons for it, in words, worst first."""
    heartbeat = live.get("heartbeat_at")
    if not live or not live.get("running") or heartbeat is None or now - float(heartbeat) > HEARTBEAT_STALE_S:
        return "grey", ["the possync agent is not running"]
    red: list[str] = []
    amber: list[str] = []
    if live.get("auth_failed"):
        red.append("the WMS refused possync's credentials: delivery is paused")
    if counts.exceptions_open:
        red.append(
            f"{counts.exceptions_open} exception{'s' if counts.exceptions_open != 1 else ''} waiting for a person"
        )
    drift = live.get("reconcile_drift_skus")
    if drift is not None and int(drift) > thresholds.drift_threshold:
        red.append(drift_reason(str(live.get("reconcile_day")), int(drift), thresholds.drift_threshold))
    if disk_free_mb is not None and disk_free_mb < thresholds.disk_min_free_mb:
        red.append(f"disk nearly full: {disk_free_mb:.0f} MB free")
    offline_since = live.get("offline_since")
    if live.get("wms_reachable") is False and offline_since is not None:
        offline_for = now - float(offline_since)
        text = f"WMS unreachable for {age_text(offline_for)}"
        (red if offline_for >= thresholds.offline_alert_after_s else amber).append(text)
    oldest = counts.oldest_pending_enqueued_at
    if oldest is not None and now - oldest > thresholds.sla_s:
        amber.append(f"oldest unsent movement is {age_text(now - oldest)} old (SLA {age_text(thresholds.sla_s)})")
    if live.get("paused"):
        amber.append("delivery paused by an operator")
    if _growing(history or []):
        amber.append(f"backlog growing for {GROWING_MINUTES} min ({counts.pending} waiting)")
    for name, health in sorted((live.get("sources") or {}).items()):
        if isinstance(health, dict) and health.get("state") == "error":
            amber.append(f"source {name} has a problem: {health.get('last_error') or 'see its log'}")
    if red:
        return "red", red + amber
    if amber:
        return "amber", amber
    return "green", ["in sync" if counts.pending == 0 else f"{counts.pending} movements on their way"]


def drift_reason(day: str, drift_skus: int, threshold: int) -> str:
    """Return the words for reconciliation drift beyond the threshold."""
    return (
        f"reconciliation of {day}: {drift_skus} SKU(s) differ from the WMS (more than {threshold}); "
        f"see possync reconcile --day {day}"
    )


def _growing(history: list[dict[str, Any]]) -> bool:
    recent = [int(p.get("pending", 0)) for p in history[-(GROWING_MINUTES + 1) :]]
    return len(recent) == GROWING_MINUTES + 1 and all(b > a for a, b in itertools.pairwise(recent))


def build_status(
    counts: Counts,
    live: dict[str, Any],
    thresholds: Thresholds,
    *,
    store_id: str,
    data_dir: Path,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the status record shown by ``possync status --json`` (and later the status API)."""
    now = time.time() if now is None else now
    disk_free_mb = _disk_free_mb(data_dir)
    history = live.get("history")
    state, reasons = evaluate(
        counts, live, thresholds, now, disk_free_mb, history if isinstance(history, list) else None
    )
    oldest = counts.oldest_pending_enqueued_at
    return {
        "state": state,
        "reasons": reasons,
        "store_id": store_id,
        "agent_running": state != "grey",
        "pending": counts.pending,
        "in_flight": counts.in_flight,
        "acked": counts.acked,
        "rejected": counts.rejected,
        "held": counts.held,
        "exceptions_open": counts.exceptions_open,
        "oldest_pending_age_s": round(now - oldest, 1) if oldest is not None else None,
        "sla_s": thresholds.sla_s,
        "last_sync_at": _iso(live.get("last_sync_at")),
        "wms_reachable": live.get("wms_reachable") if state != "grey" else None,
        "wms_latency_ms": live.get("wms_latency_ms"),
        "offline_since": _iso(live.get("offline_since")),
        "auth_failed": bool(live.get("auth_failed")),
        "paused": bool(live.get("paused")),
        "last_error": live.get("last_error"),
        "item_master_items": live.get("item_master_count"),
        "item_master_at": _iso(live.get("item_master_at")),
        "sources": live.get("sources") or {},
        "disk_free_mb": round(disk_free_mb) if disk_free_mb is not None else None,
        "version": live.get("version"),
        "api_url": live.get("api_url") if state != "grey" else None,
        "heartbeat_at": _iso(live.get("heartbeat_at")),
        "snapshot_version": live.get("snapshot_version"),
        "snapshot_age_s": round(now - float(pulled), 1) if (pulled := live.get("snapshot_pulled_at")) else None,
        "reconcile_day": live.get("reconcile_day"),
        "reconcile_drift_skus": live.get("reconcile_drift_skus"),
        "drift_threshold": thresholds.drift_threshold,
    }


def _disk_free_mb(path: Path) -> float | None:
    try:
        return shutil.disk_usage(path).free / 1_048_576
    except OSError:
        return None


def _iso(epoch: Any) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="seconds")


def age_text(seconds: float) -> str:
    """Return a short human age (``45 s``, ``12 min``, ``3.5 h``, ``2.0 days``)."""
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
