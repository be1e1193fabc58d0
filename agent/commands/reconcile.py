"""``possync reconcile --day D``: compare captured, held-in-outbox and WMS-acknowledged movements."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.commands.common import Subparsers, add_config_arg, attach_outbox, fail, load_config_or_exit


def register(sub: Subparsers) -> None:
    """Add the ``reconcile`` command."""
    parser = add_config_arg(sub.add_parser("reconcile", help="reconcile one business day with the WMS"))
    parser.add_argument("--day", metavar="YYYY-MM-DD", help="business day (default: yesterday, store time)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--out", metavar="FOLDER", help="where to write the CSV (default: reconcile.report_dir)")
    parser.set_defaults(func=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Print the reconciliation of a business day and write it as CSV; exit 1 if it is not clean."""
    from outbox.reconcile import reconcile, render, write_csv

    config = load_config_or_exit(args)
    try:
        day = (
            date.fromisoformat(args.day)
            if args.day
            else datetime.now(ZoneInfo(config.agent.timezone)).date() - timedelta(days=1)
        )
    except ValueError:
        return fail(f"--day {args.day!r} is not a date; write it as YYYY-MM-DD", 2)
    outbox = attach_outbox(config)
    try:
        report = reconcile(outbox.db, day)
    finally:
        outbox.db.close()
    path = write_csv(report, Path(args.out) if args.out else config.report_dir)
    if args.json:
        print(json.dumps({**report.to_json(), "csv": str(path)}, indent=2))
    else:
        print(render(report))
        print(f"\nCSV report: {path}")
    return 0 if report.clean else 1
