"""``possync demo``: sandbox WMS plus agent on the sample data, then a reconciliation."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser("demo", help="run sandbox WMS + agent on sample data and reconcile")
    p.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (default: a temporary folder)")
    p.add_argument("--offline-for", type=float, default=2.0, help="seconds the WMS is offline during the drop")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole pipeline on sample data and reconcile."""
    from agent.demo import run_demo

    return run_demo(keep=Path(args.keep) if args.keep else None, offline_s=args.offline_for, timeout_s=args.timeout)
