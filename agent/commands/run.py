"""``possync run``: the agent in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal

from agent.commands.common import Subparsers, add_config_arg, fail, load_config_or_exit


def register(sub: Subparsers) -> None:
    """Add the ``run`` command."""
    parser = add_config_arg(sub.add_parser("run", help="run the agent until stopped"))
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGINT/SIGTERM."""
    from agent.logs import setup_logging
    from agent.runtime import Agent
    from agent.secrets import SecretError
    from agent.singleton import AlreadyRunning, DataDirUnusable
    from outbox.db import DatabaseDamaged
    from outbox.migrations import SchemaMismatch

    config = load_config_or_exit(args)
    try:
        setup_logging(config.agent.log_level, config.data_dir / "logs")
    except OSError as exc:
        setup_logging(config.agent.log_level)
        return fail(f"cannot start: the log folder in {config.data_dir} cannot be written ({exc.strerror or exc})")
    agent = Agent(config)
    try:
        agent.start()
    except (SecretError, AlreadyRunning, DataDirUnusable, DatabaseDamaged, SchemaMismatch, OSError) as exc:
        return fail(f"cannot start: {exc}")
    stop = agent.stop_event

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(timeout=1.0):
        pass
    agent.stop()
    return 0
