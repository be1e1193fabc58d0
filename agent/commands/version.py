"""``possync version``."""

from __future__ import annotations

import argparse

from agent.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    """Add the ``version`` command."""
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)


def cmd_version(_args: argparse.Namespace) -> int:
    """Print the version."""
    from agent.runtime import possync_version

    print(f"possync {possync_version()}")
    return 0
