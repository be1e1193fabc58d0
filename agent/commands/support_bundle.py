"""``possync support-bundle``: zip the logs, redacted config, status and versions for support."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent.commands.common import Subparsers, add_config_arg, fail, load_config_or_exit


def register(sub: Subparsers) -> None:
    """Add the ``support-bundle`` command."""
    p = add_config_arg(sub.add_parser("support-bundle", help="zip logs, redacted config, status and versions"))
    p.add_argument("--output", metavar="FILE", help="the zip to write (default: possync-support-STORE-TIME.zip)")
    p.set_defaults(func=cmd_support_bundle)


def cmd_support_bundle(args: argparse.Namespace) -> int:
    """Write the bundle and print its path."""
    from agent.support_bundle import write_bundle

    config = load_config_or_exit(args)
    name = f"possync-support-{config.agent.store_id}-{time.strftime('%Y%m%d-%H%M%S')}.zip"
    try:
        path = write_bundle(config, Path(args.output) if args.output else Path(name))
    except OSError as exc:
        return fail(f"cannot write the support bundle: {exc.strerror or exc}")
    print(path)
    return 0
