"""``possync stock [SKU|barcode] [--json]``: the store stock view, read from the outbox file."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from agent.commands.common import Subparsers, add_config_arg, attach_outbox, fail, load_config_or_exit
from outbox.stock import StockRecord


def register(sub: Subparsers) -> None:
    """Add the ``stock`` command."""
    parser = add_config_arg(sub.add_parser("stock", help="show the store's effective stock"))
    parser.add_argument("item", nargs="?", metavar="SKU|barcode", help="one SKU, barcode or alias (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON (one record per location)")
    parser.set_defaults(func=cmd_stock)


def cmd_stock(args: argparse.Namespace) -> int:
    """Print the effective stock of one item or of the whole store."""
    from outbox.stock import StockView

    config = load_config_or_exit(args)
    outbox = attach_outbox(config)
    try:
        view = StockView(outbox.db)
        now = time.time()
        if args.item is None:
            records = view.all(now)
        else:
            sku = view.resolve(args.item)
            if sku is None:
                return fail(f"{args.item!r} is not a SKU, barcode or alias possync knows")
            records = view.lookup(sku, now)
        if args.json:
            data = [r.to_json() for r in records]
            print(json.dumps(data[0] if args.item is not None and len(data) == 1 else data, indent=2))
        else:
            print(render_stock(records, view.info() is not None))
        return 0
    finally:
        outbox.db.close()


def render_stock(records: Sequence[StockRecord], have_snapshot: bool) -> str:
    """Format stock records as a table."""
    from agent.status import age_text

    if not records:
        return "No stock known yet: the agent has not pulled a snapshot from the WMS."
    lines = [f"{'SKU':<20} {'location':<14} {'on hand':>9} {'pending':>8} {'allocated':>9} {'available':>9}"]
    for r in records:
        data = r.to_json()
        lines.append(
            f"{r.sku:<20} {r.location:<14} {data['effective_on_hand']:>9} {data['pending_delta']:>8} "
            f"{data['allocated']:>9} {data['available']:>9}"
        )
    first = records[0]
    if not have_snapshot or first.snapshot_age_s is None:
        lines.append("No WMS snapshot yet: quantities are local movements only.")
    else:
        lines.append(f"WMS snapshot as of {first.snapshot_as_of}, confirmed {age_text(first.snapshot_age_s)} ago.")
    return "\n".join(lines)
