"""``possync install`` and ``possync uninstall``: the unattended path for fleet tools."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.commands.common import Subparsers, fail


def register(sub: Subparsers) -> None:
    """Add the ``install`` and ``uninstall`` commands."""
    p = sub.add_parser("install", help="install or upgrade unattended: config, credentials, service, doctor")
    p.add_argument(
        "--config", metavar="FILE", required=True, help="the fleet config template (${VAR} filled from the environment)"
    )
    p.add_argument("--store-id", help="this store's agent.store_id (default: $POSSYNC_STORE_ID)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set agent./wms./sync. keys")
    p.add_argument("--wms-secret-env", default="POSSYNC_WMS_SECRET", help="variable holding the WMS secret")
    p.add_argument("--api-secret-env", default="POSSYNC_API_SECRET", help="variable holding the local API token")
    p.add_argument("--secret-store", choices=("auto", "keyring", "file"), default="auto", help="where secrets go")
    p.add_argument("--user", action="store_true", help="install for this user (systemd --user, LaunchAgent)")
    p.add_argument("--account", help="service account (default: possync, _possync, NT SERVICE\\possync)")
    p.add_argument("--executable", help="the possync executable the service runs (default: this one)")
    p.add_argument("--replace-config", action="store_true", help="on upgrade, write the config from the template again")
    p.add_argument("--no-service", action="store_true", help="do not register a service (another supervisor runs it)")
    p.add_argument("--no-start", action="store_true", help="register the service but do not start it")
    p.add_argument(
        "--no-doctor", action="store_true", help="skip the doctor checks (e.g. the WMS is not reachable yet)"
    )
    p.add_argument("--tray", action="store_true", help="start the tray with the installing user's desktop session")
    p.set_defaults(func=cmd_install)
    u = sub.add_parser("uninstall", help="remove the service; keep the data and config unless --purge")
    u.add_argument("--config", metavar="FILE", help="the installed config (default: the installed location)")
    u.add_argument("--user", action="store_true", help="the per-user installation")
    u.add_argument("--purge", action="store_true", help="also delete the data folder (outbox), config and secrets")
    u.add_argument("--no-service", action="store_true", help="there is no service to remove")
    u.set_defaults(func=cmd_uninstall)


def cmd_install(args: argparse.Namespace) -> int:
    """Install or upgrade; exit 0 on success, 1 with the reason otherwise."""
    from installer.unattended import InstallFailed, InstallRequest, install

    settings: dict[str, str] = {}
    store_id = args.store_id or os.environ.get("POSSYNC_STORE_ID")
    if store_id:
        settings["agent.store_id"] = store_id
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            return fail(f"--set {item}: write KEY=VALUE, e.g. --set wms.url=https://wms.example.com", 2)
        settings[key.strip()] = value
    request = InstallRequest(
        template=Path(args.config),
        scope="user" if args.user else "system",
        settings=settings,
        secret_env={"wms": args.wms_secret_env, "api": args.api_secret_env},
        secret_store=args.secret_store,
        account=args.account,
        executable=args.executable,
        register_service=not args.no_service,
        start=not args.no_start,
        doctor=not args.no_doctor,
        tray=args.tray,
        replace_config=args.replace_config,
    )
    try:
        config = install(request)
    except InstallFailed as exc:
        return fail(f"install failed: {exc}")
    except OSError as exc:
        return fail(f"install failed: {exc}")
    print(f"possync installed for store {config.agent.store_id}: config {config.path}, data {config.data_dir}")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    """Remove the service (and with --purge everything possync stored)."""
    from installer.plan import PlanFailed
    from installer.unattended import uninstall

    try:
        uninstall(
            "user" if args.user else "system",
            purge=args.purge,
            config_path=Path(args.config) if args.config else None,
            service_too=not args.no_service,
        )
    except (PlanFailed, OSError) as exc:
        return fail(f"uninstall failed: {exc}")
    return 0
