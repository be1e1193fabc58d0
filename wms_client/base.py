"""The WMS client contract and the registry of WMS kinds.

Invariants:
- ``push`` never raises for anything the WMS or the network does: every event of the batch ends in
  the report as accepted, duplicate, rejected (with code and message) or retry.
- ``stock_snapshot`` and ``item_master`` raise ``WmsUnavailable`` (try later) or ``WmsAuthError``
  (credentials refused); nothing else escapes for a server's behaviour.
- A WMS kind is one module: a pydantic settings model subclassing ``WmsSettings`` (validated without
  I/O; secrets stay references until the factory resolves them through ``SecretLookup``) and a factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from agent.domain import ItemRecord, Movement, PushReport, Snapshot, check_secret_ref, parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
SecretRef = Annotated[str, AfterValidator(check_secret_ref)]
MAX_BATCH = 500

SecretLookup = Callable[[str], str]
"""Resolves a secret reference such as ``keyring:possync/wms`` to its value (re-read on each call)."""


class WmsSettings(BaseModel):
    """Keys of ``[wms]`` shared by every WMS kind."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    batch_size: int = Field(200, ge=1, le=MAX_BATCH)
    timeout_s: float = Field(10.0, gt=0, le=300)
    snapshot_every: Duration = 300.0
    item_master_every: Duration = 3600.0


class WmsUnavailable(RuntimeError):
    """The WMS could not be reached or answered with a transient error; try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        """Carry the server's requested delay when it gave one."""
        super().__init__(message)
        self.retry_after = retry_after


class WmsAuthError(RuntimeError):
    """The WMS refused our credentials."""


class WmsClient(Protocol):
    """What the agent needs from any WMS."""

    def push(self, batch: Sequence[Movement]) -> PushReport:
        """Deliver a batch; return one result per event."""
        ...

    def stock_snapshot(self) -> Snapshot:
        """Return the store's current stock snapshot (all pages)."""
        ...

    def item_master(self) -> list[ItemRecord]:
        """Return the WMS item master (all pages)."""
        ...

    def ping(self) -> float:
        """Check reachability and credentials; return the round trip in seconds."""
        ...

    def refresh_credentials(self) -> bool:
        """Re-read credentials (after a rotation); return True if they changed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class WmsKind:
    """A registered WMS kind: its settings model and how to build a client from them."""

    settings: type[BaseModel]
    build: Callable[[BaseModel, str, SecretLookup], WmsClient]


REGISTRY: dict[str, WmsKind] = {}


def register(kind: str, settings: type[BaseModel], build: Callable[..., WmsClient]) -> None:
    """Add a WMS kind to the registry (called by each kind's module at import)."""
    REGISTRY[kind] = WmsKind(settings=settings, build=build)
