"""``possync`` command line. Each command lives in ``agent.commands.<name>``; this module assembles them.

Exit codes: 0 success; 1 the command failed (the message says why); 2 the config or the command
line is wrong. ``possync status`` exits 0 green, 1 amber, 2 red, 3 grey/unknown, so monitoring
tools can use it directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent.commands import (
    credentials,
    demo,
    doctor,
    exceptions,
    install,
    receipts,
    reconcile,
    run,
    sandbox,
    service,
    status,
    stock,
    support_bundle,
    tray,
    version,
)

COMMANDS = (
    run,
    status,
    stock,
    reconcile,
    exceptions,
    receipts,
    sandbox,
    demo,
    tray,
    doctor,
    credentials,
    service,
    install,
    support_bundle,
    version,
)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``possync`` argument parser from the command modules."""
    parser = argparse.ArgumentParser(prog="possync", description="Store-side POS to WMS sync agent.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``possync`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return version.cmd_version(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
