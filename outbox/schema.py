"""Table models of the outbox file (SQLModel); the DDL that creates them lives in ``migrations``.

Invariants:
- These classes describe the schema at ``migrations.CURRENT_VERSION``; a test checks the migrated
  file and these models agree column by column.
- ``movement.seq`` is the delivery order; ``movement.event_id`` is unique (the dedupe key).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Table
from sqlmodel import Field, SQLModel


class Status(StrEnum):
    """Life of a movement in the outbox."""

    READY = "ready"  # waiting for delivery (possibly in backoff until next_attempt_at)
    IN_FLIGHT = "in_flight"  # leased by the delivery loop until lease_until
    ACKED = "acked"  # the WMS accepted it (or had it already)
    HELD = "held"  # item unknown to the item master: parked in the exception queue
    REJECTED = "rejected"  # the WMS refused it permanently: parked in the exception queue
    DISCARDED = "discarded"  # an operator resolved its exception without delivering it


class Category(StrEnum):
    """Why an exception is waiting for a person."""

    UNKNOWN_ITEM = "unknown_item"
    UNKNOWN_UNIT = "unknown_unit"
    REJECTED = "rejected"
    CAPTURE = "capture"
    POST_VOID = "post_void"
    STORAGE = "storage"


class ExceptionStatus(StrEnum):
    """Whether an exception still needs attention."""

    OPEN = "open"
    RESOLVED = "resolved"


class MovementRow(SQLModel, table=True):
    """A captured movement and its delivery state."""

    __tablename__ = "movement"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    status: str = Field(index=True)
    source: str
    pos_transaction_id: str = Field(index=True)
    line_no: int
    kind: str
    sku: str | None = Field(default=None, index=True)
    location: str
    delta: str
    business_day: str = Field(index=True)
    occurred_at: str
    payload: str
    attempts: int = 0
    next_attempt_at: float = 0.0
    lease_until: float | None = None
    enqueued_at: float
    acked_at: float | None = None
    result: str | None = None
    last_error: str | None = None
    wms_position: int | None = Field(default=None, index=True)  # schema v3: where the WMS applied it


class ExceptionRow(SQLModel, table=True):
    """A movement or POS line waiting for a person, with the reason in words."""

    __tablename__ = "exception_record"

    id: int | None = Field(default=None, primary_key=True)
    issue_key: str = Field(unique=True)
    event_id: str | None = Field(default=None, index=True)
    category: str
    status: str = Field(index=True)
    code: str
    message: str
    source: str
    source_ref: str
    pos_transaction_id: str | None = None
    line_no: int | None = None
    raw_item_id: str | None = None
    raw: str = ""
    occurrences: int = 1
    created_at: float
    updated_at: float
    resolved_at: float | None = None
    resolution: str | None = None


class CursorRow(SQLModel, table=True):
    """Where a source resumes, stored in the same transaction as the movements it produced."""

    __tablename__ = "source_cursor"

    source: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value: str
    updated_at: float


class PostVoidRow(SQLModel, table=True):
    """A voided POS transaction and the post-void that voided it (schema version 2).

    Kept after the reversals are stored: lines of the voided transaction captured later are
    reversed on arrival. ``reversed`` counts the reversing movements stored so far.
    """

    __tablename__ = "post_void"

    voided_transaction_id: str = Field(primary_key=True)
    pos_transaction_id: str
    source: str
    payload: str  # PostVoid.to_wire() as JSON
    created_at: float
    reversed: int = 0


class StateRow(SQLModel, table=True):
    """Agent runtime state (heartbeat, WMS reachability, last sync) shared with the CLI."""

    __tablename__ = "agent_state"

    key: str = Field(primary_key=True)
    value: str
    updated_at: float


class ItemRow(SQLModel, table=True):
    """The cached item master: one row per SKU."""

    __tablename__ = "item"

    sku: str = Field(primary_key=True)
    description: str = ""
    base_unit: str
    units: str  # JSON object: unit code -> factor to the base unit, as decimal text
    status: str = "active"


class ItemCodeRow(SQLModel, table=True):
    """A barcode, alias or SKU that names an item, for mapping what the POS wrote."""

    __tablename__ = "item_code"

    code: str = Field(primary_key=True)
    sku: str = Field(index=True)
    code_kind: str


class StockLevelRow(SQLModel, table=True):
    """One SKU at one location in the newest WMS stock snapshot (schema version 3)."""

    __tablename__ = "stock_level"

    sku: str = Field(primary_key=True)
    location: str = Field(primary_key=True)
    on_hand: str  # decimal text
    allocated: str
    available: str | None = None


class StockSnapshotRow(SQLModel, table=True):
    """The header of the newest stock snapshot: its WMS version and age (one row, id 1)."""

    __tablename__ = "stock_snapshot"

    id: int = Field(default=1, primary_key=True)
    store_id: str
    version: int
    as_of: str
    pulled_at: float
    levels: int


def table(model: type[SQLModel]) -> Table:
    """Return the Core table of a table model (typed, for Core-level hot paths)."""
    result = model.__table__  # type: ignore[attr-defined]
    assert isinstance(result, Table)
    return result
