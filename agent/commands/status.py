"""``possync status``: the sync state in one screen or as JSON, with an exit code per state."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from agent.commands.common import Subparsers, add_config_arg, attach_outbox, load_config_or_exit

if TYPE_CHECKING:
    from agent.config import Config

STATE_EXIT = {"green": 0, "amber": 1, "red": 2, "grey": 3}


def register(sub: Subparsers) -> None:
    """Add the ``status`` command."""
    parser = add_config_arg(
        sub.add_parser("status", help="show sync state (exit 0 green, 1 amber, 2 red, 3 not running)")
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Print the agent's state (one screen, or JSON)."""
    from agent.runtime import thresholds
    from agent.status import build_status
    from outbox.state import AgentState

    config = load_config_or_exit(args)
    if args.json and not config.outbox_path.exists():
        return _never_ran(config)
    outbox = attach_outbox(config)
    try:
        record = build_status(
            outbox.counts(),
            AgentState(outbox.db).get_all(),
            thresholds(config),
            store_id=config.agent.store_id,
            data_dir=config.data_dir,
        )
    finally:
        outbox.db.close()
    print(json.dumps(record, indent=2) if args.json else render_status(record))
    return STATE_EXIT.get(str(record["state"]), 3)


def _never_ran(config: Config) -> int:
    """Print the grey record of an agent that has never run with this config (for monitoring tools); exit 3."""
    from agent.runtime import thresholds
    from agent.status import build_status
    from outbox.queue import Counts

    why = f"no outbox at {config.outbox_path}: the agent has not run with this config yet"
    empty = Counts(0, 0, 0, 0, 0, 0, 0, None, None)
    record = build_status(empty, {}, thresholds(config), store_id=config.agent.store_id, data_dir=config.data_dir)
    record["reasons"] = [why, *record["reasons"]]
    print(json.dumps(record, indent=2))
    return 3


def render_status(record: dict[str, Any]) -> str:
    """Format a status record for a terminal."""
    from agent.status import age_text

    symbol = {"green": "OK", "amber": "ATTENTION", "red": "ACTION NEEDED", "grey": "NOT RUNNING"}
    state = str(record["state"])
    lines = [
        f"possync store {record['store_id']}: {state.upper()} ({symbol.get(state, '?')})",
        *(f"  - {reason}" for reason in record["reasons"]),
        "",
        f"  pending        {record['pending']} (in flight {record['in_flight']})",
        f"  delivered      {record['acked']}",
        f"  exceptions     {record['exceptions_open']} open "
        f"({record['rejected']} rejected by the WMS, {record['held']} waiting for the item master)",
    ]
    age = record.get("oldest_pending_age_s")
    lines.append(f"  oldest pending {age_text(age) if age is not None else '-'} (SLA {age_text(record['sla_s'])})")
    reachable = {True: "yes", False: "NO", None: "unknown"}[record["wms_reachable"]]
    latency = f", {record['wms_latency_ms']} ms" if record.get("wms_latency_ms") is not None else ""
    lines.append(f"  WMS reachable  {reachable}{latency}")
    lines.append(f"  last sync      {record['last_sync_at'] or 'never'}")
    if record.get("last_error"):
        lines.append(f"  last error     {record['last_error']}")
    for name, health in (record.get("sources") or {}).items():
        extra = f" - {health['last_error']}" if health.get("last_error") else ""
        lines.append(f"  source {name}: {health.get('state')}, {health.get('captured', 0)} captured{extra}")
    if record.get("disk_free_mb") is not None:
        lines.append(f"  disk free      {record['disk_free_mb']} MB")
    return "\n".join(lines)
