"""Hostile files in a real watched folder (watchdog, a real outbox): XML attacks, names, links, sizes.

- XML entity expansion (billion laughs), external entities, external DTDs and parameter entities
  pointing at a real HTTP server on 127.0.0.1 are quarantined with the reason, and the server is
  never contacted.
- Names with ``..`` and backslashes (a path separator on Windows), Windows device names, names
  Windows refuses, 255-byte names and names that are not UTF-8 are all captured or quarantined, and
  every file possync writes stays inside the archive or quarantine folder, under a portable name.
- A symbolic link in the inbox is never followed: its target is not read, moved or changed.
- Files over ``max_file_mb`` are quarantined with the reason, in every format.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from outbox.queue import Outbox
from tests.integration.test_file_drop_folder import HEADER, files, make_source, outbox, quantities, rows, watching
from tests.support.helpers import wait_for

__all__ = ["outbox"]  # the fixture, re-used


class DtdServer:
    """A real HTTP server that would hand out DTDs and entity files, and counts who asked."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.requests.append(self.path)
                body = b'<!ENTITY leak "fetched">'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_xml_bombs_and_external_references_are_quarantined_and_never_fetched(tmp_path: Path, outbox: Outbox) -> None:
    server = DtdServer()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    attacks = {
        "laughs.xml": '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><POSLog>&d;</POSLog>',
        "xxe-file.xml": f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]><POSLog>&e;</POSLog>',
        "xxe-http.xml": f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "{server.url}/e">]><POSLog>&e;</POSLog>',
        "external-dtd.xml": f'<?xml version="1.0"?><!DOCTYPE POSLog SYSTEM "{server.url}/poslog.dtd"><POSLog/>',
        "parameter.xml": f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "{server.url}/p"> %p;]><POSLog>&leak;</POSLog>',
        "xinclude.xml": f'<POSLog xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{server.url}/x" parse="text"/></POSLog>',
    }
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    try:
        for name, text in attacks.items():
            (inbox / name).write_text(text)
        with watching(make_source(tmp_path, format="poslog", columns={}, default_kind=None), outbox) as source:
            wait_for(
                lambda: len(files(inbox / "quarantine")) + len(files(inbox / "done")) >= len(attacks) + 5, timeout=30
            )
        quarantined = files(inbox / "quarantine")
        for name in set(attacks) - {"xinclude.xml"}:
            reason = (inbox / "quarantine" / f"{name}.reason.txt").read_text()
            assert "DTD" in reason or "entit" in reason, reason
            assert (inbox / "quarantine" / name).read_text() == attacks[name]  # kept unchanged
        assert "xinclude.xml" in files(inbox / "done")  # XInclude is just an unknown element: never processed
        assert server.requests == [], f"possync fetched {server.requests}"
        with outbox.db.read() as conn:
            stored = b"".join(
                bytes(str(r), "utf-8") for r in conn.exec_driver_sql("SELECT * FROM exception_record").all()
            )
        assert b"TOP-SECRET" not in stored and b"fetched" not in stored
        assert source.health.files_quarantined == len(attacks) - 1 and len(quarantined) == 2 * (len(attacks) - 1)
    finally:
        server.stop()


NAMES = {
    "x\\..\\..\\evil.csv": "BACKSLASH",
    "x..%2f..%2fevil.csv": "PERCENT",
    "CON.csv": "CON",
    "nul.csv": "NUL",
    "COM1.csv": "COM1",
    "LPT1.txt.csv": "LPT1",
    "aux .csv": "AUX",
    "a:b|c?.csv": "RESERVED",
    "z" * 251 + ".csv": "LONG",
    os.fsdecode(b"\xff\xfe-\x80.csv"): "BYTES",
}


def test_hostile_names_stay_inside_their_folders_under_portable_names(tmp_path: Path, outbox: Outbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, txn in NAMES.items():
        (inbox / name).write_text(HEADER + rows(txn, 1))
    broken = {"CON.reason.csv": "not, a, header\n", "q\\..\\x.csv": "nope\n", "prn.csv": "\xff\n"}
    for name, text in broken.items():
        (inbox / name).write_text(text)
    ignored = {"..\\..\\evil.csv": "hidden", "....csv": "hidden"}  # dot files are staging files: never read
    for name in ignored:
        (inbox / name).write_text(HEADER + rows("IGNORED", 1))
    before = {p for p in tmp_path.rglob("*")}
    with watching(make_source(tmp_path), outbox):
        wait_for(lambda: len(files(inbox / "done")) == len(NAMES), timeout=30, what="all archived")
        wait_for(lambda: len(files(inbox / "quarantine")) == 2 * len(broken), timeout=30, what="bad ones quarantined")
    assert {t for t, _ in quantities(outbox)} == set(NAMES.values())
    created = {p for p in tmp_path.rglob("*")} - before
    for path in created:
        if path.is_dir():
            continue
        assert path.parent in (inbox / "done", inbox / "quarantine", tmp_path / "data"), path
        name = path.name
        assert len(os.fsencode(name)) <= 255
        if path.parent != tmp_path / "data":
            assert not any(ch in name for ch in '<>:"\\|?*'), name
            assert name.split(".", 1)[0].rstrip().upper() not in {"CON", "NUL", "PRN", "AUX", "COM1", "LPT1"}, name
    reasons = [(inbox / "quarantine" / n).read_text() for n in files(inbox / "quarantine") if n.endswith(".reason.txt")]
    assert any("File:      CON.reason.csv" in r and "Stored as: _CON.reason.csv" in r for r in reasons), reasons
    assert sorted(files(inbox)) == sorted(["done", "quarantine", *ignored])  # dot files left alone, unread


def test_a_symlink_in_the_inbox_is_never_followed(tmp_path: Path, outbox: Outbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_text(HEADER + rows("OUTSIDE", 2))
    (inbox / "link.csv").symlink_to(outside)
    (inbox / "real.csv").write_text(HEADER + rows("REAL", 1))
    with watching(make_source(tmp_path), outbox):
        wait_for(lambda: files(inbox / "done") == ["real.csv"], timeout=30)
    assert {t for t, _ in quantities(outbox)} == {"REAL"}
    assert (inbox / "link.csv").is_symlink() and outside.read_text() == HEADER + rows("OUTSIDE", 2)


def test_files_over_the_size_limit_are_quarantined_in_every_format(tmp_path: Path, outbox: Outbox) -> None:
    for fmt, name, text in [
        ("jsonl", "big.jsonl", '{"transaction_id": "x"}\n' * 200),
        ("poslog", "big.xml", "<POSLog>" + "<Transaction/>" * 400 + "</POSLog>"),
    ]:
        folder = tmp_path / fmt
        (folder / "inbox").mkdir(parents=True)
        (folder / "inbox" / name).write_text(text)
        with watching(make_source(folder, format=fmt, columns={}, default_kind=None, max_file_mb=0.001), outbox):
            wait_for((folder / "inbox" / "quarantine" / f"{name}.reason.txt").exists, timeout=30)
        assert "max_file_mb = 0.001" in (folder / "inbox" / "quarantine" / f"{name}.reason.txt").read_text()
        assert (folder / "inbox" / "quarantine" / name).read_text() == text
