"""``possync doctor``: check an installation, one line per check with the fix."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from agent.commands.common import Subparsers, add_config_arg, default_config_path


def register(sub: Subparsers) -> None:
    """Add the ``doctor`` command."""
    p = add_config_arg(
        sub.add_parser("doctor", help="check config, credentials, WMS, folders, serial ports, disk and clock")
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the WMS (default 5)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run every check; exit 0 when none failed (warnings allowed), 1 otherwise."""
    from agent.doctor import run_checks

    checks = run_checks(Path(args.config) if args.config else default_config_path(), timeout=args.timeout)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(check.line())
    failed = sum(c.status == "fail" for c in checks)
    if not args.json:
        print(f"{len(checks)} checks, {failed} failed" if failed else f"{len(checks)} checks, all passed")
    return 1 if failed else 0
