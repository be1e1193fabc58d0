"""Coverage-guided fuzzing of possync's parsers with atheris (libFuzzer), for long soaks outside CI.

Run with ``scripts/fuzz TARGET [libFuzzer options]``, for example
``scripts/fuzz poslog -atheris_runs=200000 -timeout=5``. Targets: csv, jsonl, poslog, ingest, escpos,
templates. A crash is any exception other than the parser's documented refusal (``MalformedFile``
for files, ``Unparsed`` for receipts); libFuzzer's ``-timeout`` turns a hang into a crash too.
Needs ``pip install atheris`` (the ``fuzz`` extra).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pos_adapters.reading import MalformedFile
from tests.fuzz._support import context

FOLDER = Path(tempfile.mkdtemp(prefix="possync-atheris-"))
CTX = context(FOLDER)


def _file_target(settings: dict[str, object], suffix: str) -> Callable[[bytes], None]:
    from pos_adapters.file_drop import FileDropSettings, FileDropSource

    source = FileDropSource(FileDropSettings.model_validate(settings), CTX)
    path = FOLDER / f"input{suffix}"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            for chunk in source.read(path):
                assert all(i.code and i.message for i in chunk.issues)
        except MalformedFile as exc:
            assert str(exc)

    return run


def _ingest() -> Callable[[bytes], None]:
    from pos_adapters.http_ingest import HttpIngestSettings, HttpIngestSource

    source = HttpIngestSource(HttpIngestSettings(name="pos-api", kind="http_ingest"), CTX)

    def run(data: bytes) -> None:
        response = source.accept(data)  # not ready: a valid body ends in 503, every other in 4xx
        assert response.status_code in (400, 413, 422, 503), response.status_code
        assert json.loads(bytes(response.body))["message"]

    return run


def _escpos() -> Callable[[bytes], None]:
    from pos_adapters.escpos import split_recording
    from pos_adapters.receipt_templates import builtin_names, load_builtin
    from pos_adapters.serial_tap import SerialTapSettings, read_receipt

    templates = [
        (load_builtin(n), SerialTapSettings(name="tap", port="/dev/null", template=n)) for n in builtin_names()
    ]

    def run(data: bytes) -> None:
        for receipt in split_recording(data):
            for template, settings in templates:
                outcome = read_receipt(receipt, "fuzz", template, settings, CTX)
                assert not (outcome.reason or "").startswith("internal error"), outcome.reason

    return run


def _templates() -> Callable[[bytes], None]:
    from pos_adapters.receipt_templates import Unparsed, builtin_names, load_builtin

    templates = [load_builtin(n) for n in builtin_names()]

    def run(data: bytes) -> None:
        lines = data.decode("utf-8", "replace").splitlines()
        for template in templates:
            with contextlib.suppress(Unparsed):
                template.parse(lines)

    return run


CSV = {
    "name": "drop",
    "kind": "file_drop",
    "path": ".",
    "default_kind": "sale",
    "columns": {"pos_transaction_id": "txn", "line_no": "line", "occurred_at": "at", "item": "item", "quantity": "qty"},
}
TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "csv": lambda: _file_target(CSV, ".csv"),
    "square": lambda: _file_target({"name": "sq", "kind": "file_drop", "path": ".", "preset": "square-items"}, ".csv"),
    "jsonl": lambda: _file_target({"name": "j", "kind": "file_drop", "path": ".", "format": "jsonl"}, ".jsonl"),
    "poslog": lambda: _file_target({"name": "x", "kind": "file_drop", "path": ".", "format": "poslog"}, ".xml"),
    "ingest": _ingest,
    "escpos": _escpos,
    "templates": _templates,
}


def main() -> None:
    """``python -m tests.fuzz.atheris_harness TARGET [libFuzzer options]``."""
    import atheris  # optional: pip install atheris

    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: scripts/fuzz {{{','.join(TARGETS)}}} [libFuzzer options, e.g. -atheris_runs=100000]")
    target = TARGETS[sys.argv[1]]()
    atheris.instrument_all()  # coverage feedback from every loaded Python function (possync's parsers included)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
