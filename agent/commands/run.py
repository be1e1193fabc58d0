"""``possync run``: the agent in the foreground until SIGINT/SIGTERM (or as a Windows service)."""

from __future__ import annotations

import argparse
import signal
import threading

from agent.commands.common import Subparsers, add_config_arg, fail, load_config_or_exit
from agent.config import Config


def register(sub: Subparsers) -> None:
    """Add the ``run`` command."""
    parser = add_config_arg(sub.add_parser("run", help="run the agent until stopped"))
    parser.add_argument(
        "--windows-service",
        action="store_true",
        help="run under the Windows service control manager (set by 'possync service install')",
    )
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGINT/SIGTERM, or until the Windows service is stopped."""
    config = load_config_or_exit(args)
    if args.windows_service:
        from installer.layout import SERVICE_NAME
        from installer.winservice import run_as_service

        try:
            return run_as_service(SERVICE_NAME, lambda stop: run_agent(config, stop))
        except OSError as exc:
            return fail(str(exc))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return run_agent(config, stop)


def run_agent(config: Config, stop: threading.Event) -> int:
    """Start the agent, run it until ``stop`` (or the agent itself) asks it to end, stop it cleanly."""
    from agent.logs import setup_logging
    from agent.runtime import Agent
    from agent.secrets import SecretError
    from agent.singleton import AlreadyRunning, DataDirUnusable
    from outbox.db import DatabaseDamaged
    from outbox.migrations import SchemaMismatch

    try:
        setup_logging(config.agent.log_level, config.data_dir / "logs", file_format=config.agent.log_format)
    except OSError as exc:
        setup_logging(config.agent.log_level)
        return fail(f"cannot start: the log folder in {config.data_dir} cannot be written ({exc.strerror or exc})")
    agent = Agent(config)
    try:
        agent.start()
    except (SecretError, AlreadyRunning, DataDirUnusable, DatabaseDamaged, SchemaMismatch, OSError) as exc:
        return fail(f"cannot start: {exc}")
    while not (stop.wait(timeout=0.2) or agent.stop_event.is_set()):
        pass
    agent.stop()
    return 0
