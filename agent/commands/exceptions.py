"""``possync exceptions list | retry ID | resolve ID``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict

from agent.commands.common import Subparsers, add_config_arg, attach_outbox, fail, load_config_or_exit
from outbox.exceptions import ExceptionView


def register(sub: Subparsers) -> None:
    """Add the ``exceptions`` command and its actions."""
    parser = sub.add_parser("exceptions", help="list, retry or resolve exceptions")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = add_config_arg(actions.add_parser("list", help="list open exceptions"))
    listing.add_argument("--all", action="store_true", help="include resolved exceptions")
    listing.add_argument("--json", action="store_true", help="print JSON")
    retry = add_config_arg(actions.add_parser("retry", help="try an exception again"))
    retry.add_argument("id", type=int)
    resolve = add_config_arg(actions.add_parser("resolve", help="close an exception without sending it"))
    resolve.add_argument("id", type=int)
    resolve.add_argument("--note", default="resolved by an operator", help="why it was resolved")
    parser.set_defaults(func=cmd_exceptions)


def cmd_exceptions(args: argparse.Namespace) -> int:
    """List, retry or resolve exceptions."""
    from agent.mapping import ItemMaster
    from agent.operator import CannotRetry, resolve_exception, retry_exception
    from outbox.exceptions import ExceptionNotFound, ExceptionQueue
    from outbox.items import ItemCache

    config = load_config_or_exit(args)
    outbox = attach_outbox(config)
    queue = ExceptionQueue(outbox.db)
    try:
        if args.action == "list":
            views = queue.list(include_resolved=args.all)
            print(json.dumps([asdict(v) for v in views], indent=2) if args.json else render_exceptions(views))
            return 0
        if args.action == "retry":
            items = ItemMaster(ItemCache(outbox.db).load())
            print(retry_exception(outbox, queue, items, args.id))
        else:
            print(resolve_exception(queue, args.id, args.note))
        return 0
    except (ExceptionNotFound, CannotRetry) as exc:
        return fail(str(exc))
    finally:
        outbox.db.close()


def render_exceptions(views: Sequence[ExceptionView]) -> str:
    """Format exceptions as blocks a store manager can read."""
    from agent.status import age_text

    if not views:
        return "No exceptions waiting."
    now = time.time()
    blocks = []
    for v in views:
        where = f"transaction {v.pos_transaction_id or '?'}" + (f", line {v.line_no}" if v.line_no is not None else "")
        block = [
            f"#{v.id}  {v.status}  {v.category}  ({v.code})  {age_text(now - v.created_at)} ago",
            f"    source:  {v.source} - {v.source_ref}",
            f"    POS:     {where}",
            f"    item:    {v.raw_item_id!r} (as the POS wrote it)" if v.raw_item_id else "    item:    -",
            f"    reason:  {v.message}",
        ]
        if v.raw:
            block.append(f"    line:    {v.raw[:200]}")
        if v.status == "open":
            block.append(f"    do:      possync exceptions retry {v.id}   or   possync exceptions resolve {v.id}")
        elif v.resolution:
            block.append(f"    closed:  {v.resolution}")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)
