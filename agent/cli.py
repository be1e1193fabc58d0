"""``possync`` command line: run the agent, inspect and fix its state, run the sandbox WMS, demo.

Exit codes: 0 success; 1 the command failed (the message says why); 2 the config or the command
line is wrong. ``possync status`` exits 0 green, 1 amber, 2 red, 3 grey/unknown, so monitoring
tools can use it directly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import platformdirs

from agent.config import Config, ConfigError, load_config

STATE_EXIT = {"green": 0, "amber": 1, "red": 2, "grey": 3}


def default_config_path() -> Path:
    """``$POSSYNC_CONFIG``, else ``./possync.toml`` if present, else the platform config folder."""
    env = os.environ.get("POSSYNC_CONFIG")
    if env:
        return Path(env)
    local = Path("possync.toml")
    if local.exists():
        return local
    return platformdirs.site_config_path("possync", appauthor=False) / "possync.toml"


def _config(args: argparse.Namespace) -> Config:
    path = Path(args.config) if args.config else default_config_path()
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"possync: the configuration has {len(exc.problems)} problem(s); nothing was started:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _fail(message: str, code: int = 1) -> int:
    print(f"possync: {message}", file=sys.stderr)
    return code


# -- run ---------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGINT/SIGTERM."""
    from agent.logs import setup_logging
    from agent.runtime import Agent
    from agent.secrets import SecretError
    from agent.singleton import AlreadyRunning
    from outbox.db import DatabaseDamaged
    from outbox.migrations import SchemaTooNew

    config = _config(args)
    setup_logging(config.agent.log_level, config.data_dir / "logs")
    agent = Agent(config)
    try:
        agent.start()
    except (SecretError, AlreadyRunning, DatabaseDamaged, SchemaTooNew, OSError) as exc:
        return _fail(f"cannot start: {exc}")
    stop = agent.stop_event

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(timeout=1.0):
        pass
    agent.stop()
    return 0


# -- status and exceptions ---------------------------------------------------------------------


def _attach(config: Config) -> Any:
    from outbox.migrations import SchemaMismatch
    from outbox.queue import Outbox

    if not config.outbox_path.exists():
        raise SystemExit(_fail(f"no outbox at {config.outbox_path}: the agent has not run with this config yet", 3))
    try:
        return Outbox.attach(config.outbox_path)
    except SchemaMismatch as exc:
        raise SystemExit(_fail(str(exc), 3)) from None


def cmd_status(args: argparse.Namespace) -> int:
    """Print the agent's state (one screen, or JSON)."""
    from agent.runtime import thresholds
    from agent.status import build_status
    from outbox.state import AgentState

    config = _config(args)
    outbox = _attach(config)
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
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(render_status(record))
    return STATE_EXIT.get(str(record["state"]), 3)


def render_status(record: dict[str, Any]) -> str:
    """Format a status record for a terminal."""
    from agent.status import age_text

    symbol = {"green": "OK", "amber": "ATTENTION", "red": "ACTION NEEDED", "grey": "NOT RUNNING"}
    lines = [
        f"possync store {record['store_id']}: {str(record['state']).upper()} ({symbol.get(str(record['state']), '?')})",
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


def cmd_exceptions(args: argparse.Namespace) -> int:
    """List, retry or resolve exceptions."""
    from agent.mapping import ItemMaster
    from agent.operator import CannotRetry, resolve_exception, retry_exception
    from outbox.exceptions import ExceptionNotFound, ExceptionQueue
    from outbox.items import ItemCache

    config = _config(args)
    outbox = _attach(config)
    queue = ExceptionQueue(outbox.db)
    try:
        if args.action == "list":
            views = queue.list(include_resolved=args.all)
            if args.json:
                print(json.dumps([_exception_json(v) for v in views], indent=2))
            else:
                print(render_exceptions(views))
            return 0
        if args.action == "retry":
            items = ItemMaster(ItemCache(outbox.db).load())
            print(retry_exception(outbox, queue, items, args.id))
        else:
            print(resolve_exception(queue, args.id, args.note))
        return 0
    except (ExceptionNotFound, CannotRetry) as exc:
        return _fail(str(exc))
    finally:
        outbox.db.close()


def _exception_json(view: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(view)


def render_exceptions(views: Sequence[Any]) -> str:
    """Format exceptions as blocks a store manager can read."""
    from agent.status import age_text

    if not views:
        return "No exceptions waiting."
    now = time.time()
    blocks = []
    for v in views:
        where = f"transaction {v.pos_transaction_id or '?'}" + (f", line {v.line_no}" if v.line_no is not None else "")
        block = [
            f"#{v.id}  {v.status}  {v.category}  ({v.code})  {age_text(now - v.created_at)} ago",
            f"    source:  {v.source} - {v.source_ref}",
            f"    POS:     {where}",
            f"    item:    {v.raw_item_id!r} (as the POS wrote it)" if v.raw_item_id else "    item:    -",
            f"    reason:  {v.message}",
        ]
        if v.raw:
            block.append(f"    line:    {v.raw[:200]}")
        if v.status == "open":
            block.append(f"    do:      possync exceptions retry {v.id}   or   possync exceptions resolve {v.id}")
        elif v.resolution:
            block.append(f"    closed:  {v.resolution}")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)


# -- sandbox, demo, version --------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the sandbox WMS in the foreground."""
    from agent.logs import setup_logging
    from agent.secrets import SecretError, resolve_secret
    from wms_client.sandbox.app import Faults
    from wms_client.sandbox.server import SandboxServer

    setup_logging("warning", console=True)
    token = args.token
    if token.startswith(("env:", "keyring:", "file:")):
        try:
            token = resolve_secret(token)
        except SecretError as exc:
            return _fail(str(exc), 2)
    items = Path(args.items) if args.items else demo_items_path()
    faults = Faults(
        error_rate=args.error_rate,
        fail_after_commit_rate=args.fail_after_commit_rate,
        throttle_rate=args.throttle_rate,
        retry_after_s=args.retry_after,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )
    server = SandboxServer(Path(args.data), items, token, host=args.host, port=args.port, faults=faults)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.refuse_for:
        print(f"possync sandbox: refusing connections for {args.refuse_for:g} s", flush=True)
        if stop.wait(args.refuse_for):
            return 0
    server.start()
    print(
        f"possync sandbox WMS listening on {server.url} (data {Path(args.data).resolve()}, items {items})", flush=True
    )
    stop.wait()
    server.stop()
    return 0


def demo_items_path() -> Path:
    """Return the sample item master shipped with possync."""
    return Path(__file__).parent / "demo_data" / "items.csv"


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole pipeline on sample data and reconcile."""
    from agent.demo import run_demo

    return run_demo(keep=Path(args.keep) if args.keep else None, offline_s=args.offline_for, timeout_s=args.timeout)


def cmd_version(_args: argparse.Namespace) -> int:
    """Print the version."""
    from agent.runtime import possync_version

    print(f"possync {possync_version()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the ``possync`` argument parser."""
    parser = argparse.ArgumentParser(prog="possync", description="Store-side POS to WMS sync agent.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            metavar="FILE",
            help="config file (default: $POSSYNC_CONFIG, ./possync.toml, or the system config folder)",
        )
        return p

    run = with_config(sub.add_parser("run", help="run the agent until stopped"))
    run.set_defaults(func=cmd_run)

    status = with_config(sub.add_parser("status", help="show sync state (exit 0 green, 1 amber, 2 red, 3 not running)"))
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    exc = sub.add_parser("exceptions", help="list, retry or resolve exceptions")
    exc_sub = exc.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = with_config(exc_sub.add_parser("list", help="list open exceptions"))
    listing.add_argument("--all", action="store_true", help="include resolved exceptions")
    listing.add_argument("--json", action="store_true", help="print JSON")
    retry = with_config(exc_sub.add_parser("retry", help="try an exception again"))
    retry.add_argument("id", type=int)
    resolve = with_config(exc_sub.add_parser("resolve", help="close an exception without sending it"))
    resolve.add_argument("id", type=int)
    resolve.add_argument("--note", default="resolved by an operator", help="why it was resolved")
    exc.set_defaults(func=cmd_exceptions)

    sandbox = sub.add_parser("sandbox", help="run the sandbox WMS (possync WMS protocol v1)")
    sandbox.add_argument("--port", type=int, default=8900, help="TCP port (0 picks a free one; default 8900)")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sandbox.add_argument("--data", default="sandbox-data", help="folder of the sandbox's ledger")
    sandbox.add_argument("--items", help="item master CSV (default: the sample items)")
    sandbox.add_argument(
        "--token", required=True, help="bearer token clients must present (or env:NAME, keyring:S/U, file:PATH)"
    )
    sandbox.add_argument("--error-rate", type=float, default=0.0, help="share of pushes answered 503")
    sandbox.add_argument(
        "--fail-after-commit-rate", type=float, default=0.0, help="share of pushes applied then answered 500"
    )
    sandbox.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    sandbox.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429")
    sandbox.add_argument("--latency-ms", type=int, default=0, help="delay before answering a push")
    sandbox.add_argument(
        "--refuse-for", type=float, default=0.0, help="refuse connections for this many seconds at start"
    )
    sandbox.add_argument("--seed", type=int, default=None, help="seed for the fault dice")
    sandbox.set_defaults(func=cmd_sandbox)

    demo = sub.add_parser("demo", help="run sandbox WMS + agent on sample data and reconcile")
    demo.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (default: a temporary folder)")
    demo.add_argument("--offline-for", type=float, default=2.0, help="seconds the WMS is offline during the drop")
    demo.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    demo.set_defaults(func=cmd_demo)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``possync`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return cmd_version(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
