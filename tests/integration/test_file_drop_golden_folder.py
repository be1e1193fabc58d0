"""Every file_drop golden case, dropped into a real watched folder, captures exactly its expected lines.

The contract tests (tests/contract) replay each recorded file straight through the reader. Here the
same files travel the way a store's do: written into a folder watched by watchdog, judged complete,
read in chunks, archived. Square's Items export, a cp1252 file with decimal commas, the NCR ACS POSLog
from a real store and the rest must give the same movements, issues and post-voids as the replay.
"""

from __future__ import annotations

import shutil
import threading
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.domain import Movement
from pos_adapters.base import Batch, SourceContext, SubmitResult
from pos_adapters.file_drop import FileDropSettings, FileDropSource
from tests.contract.test_golden import produced, run_case
from tests.support.helpers import wait_for

CASES = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "fixtures" / "file_drop").iterdir()
    if (p / "config.toml").exists()
)


class RecordingSink:
    """A sink that keeps every batch and the file cursors, as the outbox would."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.cursors: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def submit(self, batch: Batch) -> SubmitResult:
        with self.lock:
            self.batches.append(batch)
            if batch.cursor is not None:
                self.cursors[batch.cursor.key] = dict(batch.cursor.value)
        return SubmitResult(new=[m.event_id for m in batch.movements], duplicates=[], held=[], reversals=[])

    def cursor(self, key: str) -> dict[str, Any] | None:
        return self.cursors.get(key)

    def movements_of(self, pos_transaction_id: str) -> list[Movement]:
        return [m for b in self.batches for m in b.movements if m.pos_transaction_id == pos_transaction_id]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_a_golden_file_dropped_into_a_watched_folder_gives_what_the_replay_gives(case: Path, tmp_path: Path) -> None:
    config = tomllib.loads((case / "config.toml").read_text(encoding="utf-8"))
    agent = config.get("agent", {})
    settings = FileDropSettings.model_validate({**config["source"], "path": "inbox", "settle": "0.2s"})
    ctx = SourceContext(
        store_id=agent.get("store_id", "S001"),
        timezone=ZoneInfo(agent.get("timezone", "America/Chicago")),
        base_dir=tmp_path,
        data_dir=tmp_path,
        location=agent.get("location", agent.get("store_id", "S001")),
    )
    (recorded,) = [p for p in case.iterdir() if p.name == "input" or p.name.startswith("input.")]
    source = FileDropSource(settings, ctx)
    sink = RecordingSink()
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(sink, stop))
    thread.start()
    try:
        wait_for(lambda: source.health.state == "ok", what="source watching")
        shutil.copyfile(recorded, tmp_path / "inbox" / recorded.name)  # written in place, closed
        wait_for(lambda: (tmp_path / "inbox" / "done" / recorded.name).exists(), timeout=20, what="file archived")
    finally:
        stop.set()
        source.wake()
        thread.join(timeout=15)
    assert not (tmp_path / "inbox" / "quarantine").exists() or not list((tmp_path / "inbox" / "quarantine").iterdir())
    assert produced(sink.batches) == run_case(case)
    assert (tmp_path / "inbox" / "done" / recorded.name).read_bytes() == recorded.read_bytes(), "bytes kept as sent"
