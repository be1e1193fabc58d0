"""What the commands share: finding and loading the config, failing in words, opening the outbox."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from agent.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from outbox.queue import Outbox

Subparsers = Any  # argparse's _SubParsersAction, which is private


def default_config_path() -> Path:
    """``$POSSYNC_CONFIG``, else ``./possync.toml`` if present, else the platform config folder."""
    env = os.environ.get("POSSYNC_CONFIG")
    if env:
        return Path(env)
    local = Path("possync.toml")
    if local.exists():
        return local
    return platformdirs.site_config_path("possync", appauthor=False) / "possync.toml"


def add_config_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a command the ``--config FILE`` option."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: $POSSYNC_CONFIG, ./possync.toml, or the system config folder)",
    )
    return parser


def load_config_or_exit(args: argparse.Namespace) -> Config:
    """Load the config named by ``--config``; print every mistake and exit 2 if it is wrong."""
    path = Path(args.config) if getattr(args, "config", None) else default_config_path()
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"possync: the configuration has {len(exc.problems)} problem(s); nothing was started:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def fail(message: str, code: int = 1) -> int:
    """Print ``possync: message`` to stderr and return the exit code."""
    print(f"possync: {message}", file=sys.stderr)
    return code


def attach_outbox(config: Config) -> Outbox:
    """Open a (possibly running) agent's outbox read-mostly; exit 3 if there is none yet."""
    from outbox.migrations import SchemaMismatch
    from outbox.queue import Outbox

    if not config.outbox_path.exists():
        raise SystemExit(fail(f"no outbox at {config.outbox_path}: the agent has not run with this config yet", 3))
    try:
        return Outbox.attach(config.outbox_path)
    except SchemaMismatch as exc:
        raise SystemExit(fail(str(exc), 3)) from None
