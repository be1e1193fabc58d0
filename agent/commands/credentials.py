"""``possync credentials set|check|delete wms|api``: the agent's secrets, where the config points."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from agent.commands.common import Subparsers, add_config_arg, default_config_path, fail, load_config_or_exit


def register(sub: Subparsers) -> None:
    """Add the ``credentials`` command and its three actions."""
    parser = sub.add_parser("credentials", help="store, check or delete the WMS and local API secrets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("set", "store a secret (prompted, or --from-env / --stdin)"),
        ("check", "check that a secret is stored and readable"),
        ("delete", "remove a stored secret"),
    ):
        p = add_config_arg(actions.add_parser(action, help=text))
        p.add_argument("name", choices=("wms", "api"), help="wms: the WMS token or password; api: agent.api_token")
        if action == "set":
            source = p.add_mutually_exclusive_group()
            source.add_argument("--from-env", metavar="NAME", help="read the secret from this environment variable")
            source.add_argument("--stdin", action="store_true", help="read the secret from standard input")
        p.set_defaults(func=cmd_credentials)


def cmd_credentials(args: argparse.Namespace) -> int:
    """Carry out one ``credentials`` action."""
    from agent import credentials
    from agent.secrets import SecretError, resolve_secret

    config = None
    if args.config or default_config_path().exists():
        config = load_config_or_exit(args)
    base_dir = config.base_dir if config else None
    try:
        ref = credentials.reference_for(args.name, config)
        if args.action == "set":
            where = credentials.store(ref, _read_secret(args), base_dir)
            print(f"{args.name}: stored in {where} ({ref})")
        elif args.action == "delete":
            removed = credentials.delete(ref, base_dir)
            print(f"{args.name}: {'removed' if removed else 'nothing was stored'} ({ref})")
        else:
            resolve_secret(ref, base_dir)
            print(f"{args.name}: OK, stored and readable ({ref})")
    except (credentials.CredentialError, SecretError, ValueError) as exc:
        return fail(f"{args.name}: {exc}")
    return 0


def _read_secret(args: argparse.Namespace) -> str:
    if args.from_env:
        value = os.environ.get(args.from_env, "")
        if not value:
            raise ValueError(f"the environment variable {args.from_env} is not set or empty")
        return value
    if args.stdin or not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    first = getpass.getpass(f"{args.name} secret: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two entries differ; nothing was stored")
    return first
