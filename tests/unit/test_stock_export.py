"""The stock CSV export's atomic replacement, with writers and a reader racing on a real folder."""

from __future__ import annotations

import threading
from pathlib import Path

from outbox.reconcile import atomic_write


def test_racing_writers_never_leave_a_mixed_or_partial_export(tmp_path: Path) -> None:
    path = tmp_path / "export" / "stock.csv"
    versions = {f"writer-{w}": "sku,on_hand\n" + "".join(f"SKU-{n},{w}\n" for n in range(3000)) for w in range(3)}
    atomic_write(path, versions["writer-0"])
    seen: set[str] = set()
    done = threading.Event()

    def write(text: str) -> None:
        for _ in range(30):
            atomic_write(path, text)

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_text(encoding="utf-8"))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(text,)) for text in versions.values()]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert seen <= set(versions.values()), "a reader saw a partial or mixed export"
    assert path.read_text(encoding="utf-8") in versions.values()
    assert [p.name for p in path.parent.iterdir()] == ["stock.csv"], "no staging file left behind"
    assert path.stat().st_mode & 0o777 == 0o644
