"""``possync tray``: the status icon in the user's desktop session."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from agent.commands.common import Subparsers, add_config_arg, fail, load_config_or_exit


def register(sub: Subparsers) -> None:
    """Add the ``tray`` command."""
    p = add_config_arg(sub.add_parser("tray", help="show sync status in the system tray"))
    p.add_argument("--url", help="local API address (default: from agent.api_bind and agent.api_port)")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between status checks (default 5)")
    p.add_argument("--no-notify", action="store_true", help="do not raise desktop notifications")
    p.add_argument("--render-icons", metavar="DIR", help="write the icon of every state as PNG files and exit")
    p.add_argument(
        "--autostart", choices=("on", "off"), help="start the tray with this user's desktop session (or stop doing so)"
    )
    p.set_defaults(func=cmd_tray)


def cmd_tray(args: argparse.Namespace) -> int:
    """Run the tray until Quit, or render the icons."""
    from agent.logs import setup_logging
    from agent.tray.icons import render_all

    if args.render_icons:
        for path in render_all(Path(args.render_icons)):
            print(path)
        return 0
    from agent.secrets import SecretError, resolve_secret
    from agent.tray.app import TrayApp

    config = load_config_or_exit(args)
    if args.autostart:
        from agent.tray import autostart

        if args.autostart == "on":
            print(f"the tray starts with this session: {autostart.enable(config.path).location}")
        else:
            print("autostart removed" if autostart.disable() else "there was no autostart entry")
        return 0
    setup_logging(config.agent.log_level, console=True)
    if config.agent.api_token is None:
        return fail("agent.api_token is not set, so the agent has no local API for the tray to read", 2)
    try:
        token = resolve_secret(config.agent.api_token, config.base_dir)
    except SecretError as exc:
        return fail(f"cannot read the API token in this session: {exc}")
    host = config.agent.api_bind if config.agent.api_bind not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    app = TrayApp(
        args.url or f"http://{host}:{config.agent.api_port}", token, poll_s=args.poll, notify=not args.no_notify
    )
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    try:
        app.run()
    except Exception as exc:  # pystray picks its backend at import: no desktop session fails here
        return fail(f"cannot show a tray icon in this session ({type(exc).__name__}: {exc}); is a desktop running?")
    return 0
