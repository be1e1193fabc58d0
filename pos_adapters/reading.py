"""What every file format hands a file-reading source: chunks of results, or a whole-file refusal.

Invariants:
- A reader yields ``Chunk``s in file order; ``rows`` counts the units read so far (CSV rows, JSON
  lines, POSLog transactions) and only grows, so a source can resume after the last durable chunk
  by re-reading and skipping chunks whose ``rows`` it has already stored.
- Chunk boundaries depend only on the file's bytes and ``chunk_rows``, so re-reading a file yields
  the same chunks (and the same event ids).
- ``MalformedFile`` means the file as a whole cannot be read past some point; its message says why
  in words a store manager can act on. Chunks yielded before it are valid and may be stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.domain import CaptureIssue, Movement, PostVoid


class MalformedFile(ValueError):
    """The file as a whole cannot be read; the message says why in words."""


@dataclass(slots=True)
class Chunk:
    """Movements, issues and post-voids from consecutive units of a file; ``rows`` counts units read so far."""

    movements: list[Movement]
    issues: list[CaptureIssue]
    rows: int
    voids: list[PostVoid] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Number of results in the chunk (what ``chunk_rows`` bounds)."""
        return len(self.movements) + len(self.issues) + len(self.voids)


def display_name(name: str) -> str:
    """Return a file name safe to show and store: undecodable bytes become U+FFFD, controls are escaped.

    On Linux a file name is bytes; Python hands undecodable ones over as lone surrogates, which
    SQLite and UTF-8 text files refuse. Messages, logs and source references use this form; the
    file itself is always moved by its real name.
    """
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
