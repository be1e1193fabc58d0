"""The capture contract: what a source hands the runtime, and the registry of source kinds.

Invariants:
- A source hands the runtime ``Batch``es through ``BatchSink.submit``, which returns only once the
  batch (movements, issues and cursor together) is durable; only then may a source act on it
  (archive a file, answer 202, advance a cursor). If ``submit`` raises, nothing of the batch was
  stored and the source must keep its input.
- A source resumes from ``BatchSink.cursor``; re-reading input produces the same event ids, so a
  crash between durable and acted-upon repeats nothing.
- A batch may carry post-voids (``Batch.voids``): the sink stores each one and, in the same
  transaction, adds the reversing movements of every line of the voided transaction it has, now or
  when those lines arrive later. Sources never build reversals from stored data themselves.
- A source kind is one module: a pydantic settings model (validated without I/O) and a factory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from agent.domain import CaptureIssue, Cursor, Movement, PostVoid


@dataclass(frozen=True, slots=True)
class Batch:
    """Movements, issues and post-voids read from one stretch of a source, and where to resume after it."""

    movements: list[Movement] = field(default_factory=list)
    issues: list[CaptureIssue] = field(default_factory=list)
    cursor: Cursor | None = None
    voids: list[PostVoid] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What the outbox made of a submitted batch."""

    new: list[str]
    duplicates: list[str]
    held: list[str]
    reversals: list[str] = field(default_factory=list)


class CaptureRefused(RuntimeError):
    """The batch could not be stored (disk full, database locked); the source must keep its input."""


class BatchSink(Protocol):
    """Where a source delivers batches (implemented by the runtime over the outbox)."""

    def submit(self, batch: Batch) -> SubmitResult:
        """Store the batch durably and return; raise ``CaptureRefused`` if it could not be stored."""
        ...

    def cursor(self, key: str) -> dict[str, Any] | None:
        """Return this source's stored cursor under ``key``."""
        ...

    def movements_of(self, pos_transaction_id: str) -> list[Movement]:
        """Return the stored movements of one POS transaction (any source), in capture order."""
        ...


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What every source needs from the agent's configuration."""

    store_id: str
    timezone: ZoneInfo
    base_dir: Path
    data_dir: Path
    location: str
    secrets: Callable[[str], str] | None = None
    """Resolves a secret reference (``keyring:``, ``env:``, ``file:``) when a source needs one."""


@dataclass
class SourceHealth:
    """What a source reports about itself for status displays."""

    state: str = "starting"  # starting | ok | error
    last_capture_at: float | None = None
    captured: int = 0
    files_quarantined: int = 0
    last_error: str | None = None


class Source(Protocol):
    """A running capture source."""

    name: str
    health: SourceHealth

    def run(self, sink: BatchSink, stop: threading.Event) -> None:
        """Capture until ``stop`` is set (runs in its own thread)."""
        ...


class SourceSettings(BaseModel):
    """Keys every ``[[sources]]`` entry has."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    kind: str


Replay = Callable[[Any, SourceContext, Path], Iterator[Batch]]
"""Run a source kind over one recorded input (a file, a capture) without the live machinery."""


@dataclass(frozen=True, slots=True)
class SourceKind:
    """A registered source kind: its settings model, how to build it, and how to replay a recording.

    ``replay`` runs the kind's parsing over one recorded input and yields the batches it would
    submit; the golden contract tests and the ``replay`` commands use it.
    """

    settings: type[SourceSettings]
    build: Callable[[Any, SourceContext], Source]
    replay: Replay | None = None


REGISTRY: dict[str, SourceKind] = {}


def register(
    kind: str,
    settings: type[SourceSettings],
    build: Callable[[Any, SourceContext], Source],
    replay: Replay | None = None,
) -> None:
    """Add a source kind to the registry (called by each kind's module at import)."""
    REGISTRY[kind] = SourceKind(settings=settings, build=build, replay=replay)
