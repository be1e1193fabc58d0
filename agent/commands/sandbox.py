"""``possync sandbox``: the sandbox WMS in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from agent.commands.common import Subparsers, fail

DEMO_ITEMS = Path(__file__).resolve().parents[1] / "demo_data" / "items.csv"


def register(sub: Subparsers) -> None:
    """Add the ``sandbox`` command."""
    p = sub.add_parser("sandbox", help="run the sandbox WMS (possync WMS protocol v1)")
    p.add_argument("--port", type=int, default=8900, help="TCP port (0 picks a free one; default 8900)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--data", default="sandbox-data", help="folder of the sandbox's ledger")
    p.add_argument("--items", help="item master CSV (default: the sample items)")
    p.add_argument(
        "--token", required=True, help="bearer token clients must present (or env:NAME, keyring:S/U, file:PATH)"
    )
    p.add_argument("--error-rate", type=float, default=0.0, help="share of pushes answered 503")
    p.add_argument(
        "--fail-after-commit-rate", type=float, default=0.0, help="share of pushes applied then answered 500"
    )
    p.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429")
    p.add_argument("--latency-ms", type=int, default=0, help="delay before answering a push")
    p.add_argument("--refuse-for", type=float, default=0.0, help="refuse connections for this many seconds at start")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault dice")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM; needs --tls-key)")
    p.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    p.set_defaults(func=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the sandbox WMS in the foreground until SIGINT/SIGTERM."""
    from agent.logs import setup_logging
    from agent.secrets import SecretError, resolve_secret
    from wms_client.sandbox.app import Faults
    from wms_client.sandbox.server import SandboxServer

    setup_logging("warning", console=True)
    token = args.token
    if token.startswith(("env:", "keyring:", "file:")):
        try:
            token = resolve_secret(token)
        except SecretError as exc:
            return fail(str(exc), 2)
    items = Path(args.items) if args.items else DEMO_ITEMS
    faults = Faults(
        error_rate=args.error_rate,
        fail_after_commit_rate=args.fail_after_commit_rate,
        throttle_rate=args.throttle_rate,
        retry_after_s=args.retry_after,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )
    if bool(args.tls_cert) != bool(args.tls_key):
        return fail("--tls-cert and --tls-key go together", 2)
    tls = (Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    server = SandboxServer(Path(args.data), items, token, host=args.host, port=args.port, faults=faults, tls=tls)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.refuse_for:
        print(f"possync sandbox: refusing connections for {args.refuse_for:g} s", flush=True)
        if stop.wait(args.refuse_for):
            return 0
    server.start()
    print(
        f"possync sandbox WMS listening on {server.url} (data {Path(args.data).resolve()}, items {items})", flush=True
    )
    stop.wait()
    server.stop()
    return 0
