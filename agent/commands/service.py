"""``possync service install|uninstall|status|start|stop``: the agent as a system service."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.commands.common import Subparsers, add_config_arg, default_config_path, fail


def register(sub: Subparsers) -> None:
    """Add the ``service`` command."""
    parser = sub.add_parser("service", help="install, remove, start, stop or show the agent's service")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("install", "register the agent as a service that starts at boot (and start it)"),
        ("uninstall", "stop and remove the service (the data folder is kept)"),
        ("status", "show the service manager's view of the service"),
        ("start", "start the service"),
        ("stop", "stop the service"),
    ):
        p = add_config_arg(actions.add_parser(action, help=text))
        p.add_argument("--user", action="store_true", help="a per-user service (systemd --user, LaunchAgent)")
        p.add_argument("--dry-run", action="store_true", help="print what would be written and run, change nothing")
        if action == "install":
            p.add_argument("--account", help="service account (default: possync, _possync, NT SERVICE\\possync)")
            p.add_argument("--executable", help="the possync executable the service runs (default: this one)")
            p.add_argument("--no-start", action="store_true", help="register the service without starting it")
            p.add_argument("--tray", action="store_true", help="also start the tray with this user's desktop session")
        p.set_defaults(func=cmd_service)


def cmd_service(args: argparse.Namespace) -> int:
    """Compute the plan for the action and carry it out (or print it)."""
    from installer import service
    from installer.layout import Scope
    from installer.plan import PlanFailed, execute

    config_path = (Path(args.config) if args.config else default_config_path()).resolve()
    scope: Scope = "user" if args.user else "system"
    target = service.current_target(
        config_path, scope, account=getattr(args, "account", None), executable=getattr(args, "executable", None)
    )
    write_paths: list[str] = []
    if args.action == "install":
        from agent.config import ConfigError, load_config

        try:
            write_paths = service.write_paths(load_config(config_path))
        except ConfigError as exc:
            return fail("the config has problems; fix them before installing:\n  " + "\n  ".join(exc.problems), 2)
    plan = service.plan(
        args.action,
        target,
        extra_write_paths=write_paths,
        start=not getattr(args, "no_start", False),
        exists=args.action == "install" and service.installed_here(target),
    )
    if args.dry_run:
        print(plan.describe())
        return 0
    try:
        results = execute(plan)
    except PlanFailed as exc:
        return fail(f"service {args.action} failed: {exc}")
    for result in results:
        if result.stdout.strip():
            print(result.stdout.rstrip())
    if args.action == "install" and args.tray:
        from agent.tray import autostart

        print(f"the tray starts with this session: {autostart.enable(config_path).location}")
    if args.action == "status":
        return results[-1].returncode if results else 1
    return 0
