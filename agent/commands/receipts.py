"""``possync receipts replay FILE`` and ``possync receipts templates [NAME]``: receipt templates for IT.

``replay`` runs exactly the code the ``serial_tap`` source runs (decoder, receipt splitting, template,
line validation) over a recorded capture and prints what each receipt becomes; it needs no port, no
agent and no outbox, and changes nothing. Exit codes: 0 every receipt was read (or is a non-sale print
the template skips), 1 at least one was not, 2 the template or the command line is wrong.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.commands.common import Subparsers, fail, load_config_or_exit

if TYPE_CHECKING:
    from pos_adapters.base import SourceContext
    from pos_adapters.serial_tap import ReceiptOutcome, SerialTapSettings


def register(sub: Subparsers) -> None:
    """Add the ``receipts`` command and its actions."""
    parser = sub.add_parser("receipts", help="read recorded receipt captures (serial_tap templates)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    replay = actions.add_parser("replay", help="print what a recorded capture parses into")
    replay.add_argument("file", help="a recorded capture (raw ESC/POS bytes) or an archived receipt (.escpos.gz)")
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--template", metavar="NAME", help="a built-in template (see 'possync receipts templates')")
    which.add_argument("--template-file", metavar="FILE", help="a template of your own (TOML)")
    replay.add_argument(
        "--config", metavar="FILE", help="take the store, time zone, template and encoding from this config's source"
    )
    replay.add_argument("--source", metavar="NAME", help="the serial_tap source of --config (default: the only one)")
    replay.add_argument("--encoding", metavar="CODEC", help="the printer's power-on code page (default cp437)")
    replay.add_argument("--text", action="store_true", help="print every receipt's decoded text too")
    replay.add_argument("--json", action="store_true", help="print JSON")
    templates = actions.add_parser("templates", help="list the built-in templates, or print one to start from")
    templates.add_argument("name", nargs="?", help="print this built-in template's TOML")
    parser.set_defaults(func=cmd_receipts)


def cmd_receipts(args: argparse.Namespace) -> int:
    """Replay a capture or show the built-in templates."""
    if args.action == "templates":
        return _templates(args.name)
    return _replay(args)


def _templates(name: str | None) -> int:
    from pos_adapters.receipt_templates import TemplateError, builtin_names, builtin_text, load_builtin

    if name is None:
        for known in builtin_names():
            print(f"{known:16} {load_builtin(known).spec.description}")
        return 0
    try:
        print(builtin_text(name), end="")
    except TemplateError as exc:
        return fail(str(exc), 2)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pos_adapters.receipt_templates import TemplateError
    from pos_adapters.serial_tap import read_capture, replay_receipts, resolve_template

    settings, ctx = _settings(args)
    try:
        template = resolve_template(settings, ctx.base_dir)
    except TemplateError as exc:
        return fail(str(exc), 2)
    try:
        data = read_capture(Path(args.file))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return fail(f"cannot read {args.file}: {exc}")
    outcomes = replay_receipts(settings, ctx, data, template)
    if args.json:
        print(json.dumps([_as_json(number, o) for number, o in enumerate(outcomes, 1)], indent=2))
    else:
        print(render(outcomes, template.name, show_text=args.text))
    bad = [o for o in outcomes if o.status in ("unparsed", "partial") or o.issues]
    return 1 if bad or not outcomes else 0


def _settings(args: argparse.Namespace) -> tuple[SerialTapSettings, SourceContext]:
    from pydantic import ValidationError

    from pos_adapters.base import SourceContext
    from pos_adapters.serial_tap import SerialTapSettings

    overrides: dict[str, Any] = {}
    if args.template:
        overrides = {"template": args.template, "template_file": None}
    elif args.template_file:
        overrides = {"template": None, "template_file": str(Path(args.template_file).resolve())}
    if args.encoding:
        overrides["encoding"] = args.encoding
    if args.config:
        config = load_config_or_exit(args)
        taps = [s for s in config.sources if isinstance(s, SerialTapSettings)]
        chosen = [s for s in taps if args.source in (None, s.name)]
        if len(chosen) != 1:
            names = ", ".join(s.name for s in taps) or "none"
            what = f"no serial_tap source named {args.source!r}" if args.source else "say which with --source"
            raise SystemExit(fail(f"{what} (serial_tap sources in {config.path}: {names})", 2))
        base = chosen[0].model_dump(by_alias=True)
        ctx = SourceContext(
            store_id=config.agent.store_id,
            timezone=ZoneInfo(config.agent.timezone),
            base_dir=config.base_dir,
            data_dir=config.data_dir,
            location=config.location,
        )
    else:
        if "template" not in overrides:
            raise SystemExit(fail("say which template: --template NAME, --template-file FILE or --config FILE", 2))
        base = {"name": "replay", "kind": "serial_tap", "port": "replay"}
        ctx = SourceContext("STORE", ZoneInfo("UTC"), Path.cwd(), Path.cwd(), "STORE")
    try:
        settings = SerialTapSettings.model_validate({**base, **overrides})
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(fail(problems, 2)) from None
    return settings, ctx


def render(outcomes: list[ReceiptOutcome], template: str, *, show_text: bool = False) -> str:
    """Format replayed receipts for a terminal: one block per receipt, then a summary line."""
    blocks = []
    for number, outcome in enumerate(outcomes, 1):
        receipt = outcome.receipt
        head = f"receipt {number} (bytes {receipt.start}-{receipt.end}, ended by {receipt.ended_by})"
        block = []
        if outcome.status == "parsed":
            assert outcome.parsed is not None
            parsed = outcome.parsed
            total = f"   total {parsed.total}" if parsed.total is not None else ""
            block.append(f"{head}: {'RETURN' if parsed.is_return else 'sale'}")
            block.append(
                f"  transaction {parsed.transaction}   terminal {parsed.terminal or '-'}   "
                f"{parsed.occurred_at:%Y-%m-%d %H:%M:%S}{total}"
            )
            refused = {i.line_no: i.message for i in outcome.issues if i.line_no is not None}
            captured = {m.line_no: m for m in outcome.movements}
            for item in parsed.items:
                price = f" @ {item.price}" if item.price is not None else ""
                what = f"{item.quantity} x {item.item}{price}"
                if item.voided:
                    block.append(f"  line {item.line_no:<3} voided      {what}")
                elif item.line_no in captured:
                    block.append(f"  line {item.line_no:<3} {captured[item.line_no].kind.value:<11} {what}")
                else:
                    block.append(f"  line {item.line_no:<3} NOT CAPTURED {what}: {refused.get(item.line_no, '')}")
        elif outcome.status == "skipped":
            assert outcome.skipped is not None
            block.append(f"{head}: skipped, not a sale ({outcome.skipped.line!r})")
        else:
            block.append(f"{head}: NOT READ: {outcome.reason}")
        if show_text or outcome.status in ("unparsed", "partial"):
            block += [f"  | {line.text}" for line in receipt.lines]
            block += [f"  [{code.symbology}: {code.data.decode('latin-1')}]" for code in receipt.codes]
            block += [f"  note: {note}" for note in receipt.notes]
        blocks.append("\n".join(block))
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("parsed", "skipped", "unparsed", "partial")}
    movements = sum(len(o.movements) for o in outcomes)
    line_issues = sum(1 for o in outcomes for i in o.issues if i.line_no is not None)
    summary = (
        f"{len(outcomes)} receipt(s) read with template {template}: {counts['parsed']} parsed "
        f"({movements} movement(s){f', {line_issues} line(s) not captured' if line_issues else ''}), "
        f"{counts['skipped']} skipped, {counts['unparsed']} not parsed, {counts['partial']} cut short"
    )
    return "\n\n".join([*blocks, summary])


def _as_json(number: int, outcome: ReceiptOutcome) -> dict[str, Any]:
    receipt = outcome.receipt
    record: dict[str, Any] = {
        "receipt": number,
        "ref": outcome.ref,
        "status": outcome.status,
        "start": receipt.start,
        "end": receipt.end,
        "ended_by": receipt.ended_by,
        "reason": outcome.reason,
        "text": receipt.text,
        "codes": [{"symbology": c.symbology, "data": c.data.decode("latin-1")} for c in receipt.codes],
        "notes": list(receipt.notes),
        "movements": [m.to_wire() for m in outcome.movements],
        "issues": [
            {"code": i.code, "message": i.message, "source_ref": i.source_ref, "line_no": i.line_no}
            for i in outcome.issues
        ],
    }
    if outcome.parsed is not None:
        parsed = outcome.parsed
        record["transaction"] = parsed.transaction
        record["terminal"] = parsed.terminal
        record["occurred_at"] = parsed.occurred_at.isoformat()
        record["kind"] = "return" if parsed.is_return else "sale"
        record["total"] = str(parsed.total) if parsed.total is not None else None
        record["lines"] = [
            {
                "line_no": i.line_no,
                "item": i.item,
                "quantity": str(i.quantity),
                "unit": i.unit,
                "price": str(i.price) if i.price is not None else None,
                "amount": str(i.amount) if i.amount is not None else None,
                "voided": i.voided,
                "text": i.text,
            }
            for i in parsed.items
        ]
    if outcome.skipped is not None:
        record["skipped_because"] = outcome.skipped.line
    return record
