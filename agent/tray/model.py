"""What the tray shows for a status: pure functions, unit-tested over every state.

Invariants:
- An unreachable agent shows grey ("not running"), never the last known colour.
- Reconciliation drift above the configured threshold is red.
- The symbol differs per state (check, exclamation, cross, dash) so the state is readable without colour.
- A notification is raised only when the state gets worse (green < amber < red < grey), once per
  change, never on every poll.
- Tooltips stay under 127 characters (the Windows limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

SEVERITY = {"green": 0, "amber": 1, "red": 2, "grey": 3}
SYMBOL = {"green": "\u2713", "amber": "!", "red": "\u2715", "grey": "\u2013"}
HEADLINE = {"green": "in sync", "amber": "needs attention", "red": "action needed", "grey": "agent not running"}
TOOLTIP_MAX = 127


@dataclass(frozen=True, slots=True)
class TrayView:
    """Everything the tray renders for one status."""

    state: str
    symbol: str
    tooltip: str
    headline: str
    reason: str
    paused: bool
    exceptions: int


def view_for(status: dict[str, Any] | None) -> TrayView:
    """Return the tray view for a status record (None when the agent could not be reached)."""
    if status is None or status.get("state") not in SEVERITY:
        return TrayView(
            "grey",
            SYMBOL["grey"],
            "possync: agent not running",
            HEADLINE["grey"],
            "The possync agent is not answering.",
            False,
            0,
        )
    state = str(status["state"])
    reasons = [str(r) for r in status.get("reasons") or []]
    drift = drift_beyond_threshold(status)
    if drift is not None and state in ("green", "amber"):
        state, reasons = "red", [drift, *reasons]
    oldest = status.get("oldest_pending_age_s")
    parts = [
        f"possync {status.get('store_id', '')}: {HEADLINE[state]}",
        f"{status.get('pending', 0)} waiting" + (f", oldest {_age(float(oldest))}" if oldest is not None else ""),
        f"last sync {_clock(status.get('last_sync_at'))}",
    ]
    tooltip = "\n".join(parts)
    if len(tooltip) > TOOLTIP_MAX:
        tooltip = tooltip[: TOOLTIP_MAX - 1] + "…"
    return TrayView(
        state=state,
        symbol=SYMBOL[state],
        tooltip=tooltip,
        headline=HEADLINE[state],
        reason=reasons[0] if reasons else HEADLINE[state],
        paused=bool(status.get("paused")),
        exceptions=int(status.get("exceptions_open") or 0),
    )


def drift_beyond_threshold(status: dict[str, Any]) -> str | None:
    """Return why reconciliation drift turns the tray red, or None when it is within the threshold.

    The agent's own colour already counts drift; this rule keeps the tray red for it even when the
    status comes from an agent that judged the colour before the daily report arrived.
    """
    drift = status.get("reconcile_drift_skus")
    threshold = status.get("drift_threshold") or 0
    if not isinstance(drift, int) or drift <= int(threshold):
        return None
    day = status.get("reconcile_day") or "?"
    return f"reconciliation of {day}: {drift} SKU(s) differ from the WMS (more than {threshold})"


def notification(previous: TrayView | None, current: TrayView) -> tuple[str, str] | None:
    """Return (title, message) when the state got worse since ``previous``, else None."""
    if previous is None or SEVERITY[current.state] <= SEVERITY[previous.state]:
        return None
    return f"possync: {current.headline}", current.reason


def pause_label(view: TrayView) -> str:
    """Return the label of the pause/resume menu item."""
    return "Resume delivery" if view.paused else "Pause delivery"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(iso: Any) -> str:
    if not iso:
        return "never"
    try:
        return datetime.fromisoformat(str(iso)).astimezone().strftime("%H:%M")
    except ValueError:
        return "?"
