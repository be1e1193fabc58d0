"""Schema versions of the outbox file, applied in order, each in one transaction.

Invariants:
- ``PRAGMA user_version`` is the schema version; a migration and its version bump commit together,
  so a crash during a migration leaves the file at the old version, never half-migrated.
- Migrations only ever add or transform; there is no "delete the file and start again".
- A file newer than this code (a downgrade) is refused rather than guessed at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection

from outbox.db import Database

log = logging.getLogger("possync.outbox")


class SchemaMismatch(RuntimeError):
    """The outbox file's schema is not the one this possync works with."""


class SchemaTooNew(SchemaMismatch):
    """The outbox file was written by a newer possync; refusing to touch it."""


def _v1(conn: Connection) -> None:
    statements = [
        """CREATE TABLE movement (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id VARCHAR NOT NULL UNIQUE,
            status VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            pos_transaction_id VARCHAR NOT NULL,
            line_no INTEGER NOT NULL,
            kind VARCHAR NOT NULL,
            sku VARCHAR,
            location VARCHAR NOT NULL,
            delta VARCHAR NOT NULL,
            business_day VARCHAR NOT NULL,
            occurred_at VARCHAR NOT NULL,
            payload VARCHAR NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at FLOAT NOT NULL DEFAULT 0,
            lease_until FLOAT,
            enqueued_at FLOAT NOT NULL,
            acked_at FLOAT,
            result VARCHAR,
            last_error VARCHAR)""",
        "CREATE INDEX ix_movement_status ON movement (status, seq)",
        "CREATE INDEX ix_movement_sku ON movement (sku)",
        "CREATE INDEX ix_movement_business_day ON movement (business_day)",
        """CREATE TABLE exception_record (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            issue_key VARCHAR NOT NULL UNIQUE,
            event_id VARCHAR,
            category VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            code VARCHAR NOT NULL,
            message VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            source_ref VARCHAR NOT NULL,
            pos_transaction_id VARCHAR,
            line_no INTEGER,
            raw_item_id VARCHAR,
            raw VARCHAR NOT NULL DEFAULT '',
            occurrences INTEGER NOT NULL DEFAULT 1,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            resolved_at FLOAT,
            resolution VARCHAR)""",
        "CREATE INDEX ix_exception_record_event_id ON exception_record (event_id)",
        "CREATE INDEX ix_exception_record_status ON exception_record (status)",
        """CREATE TABLE source_cursor (
            source VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (source, key))""",
        """CREATE TABLE agent_state (
            key VARCHAR NOT NULL PRIMARY KEY,
            value VARCHAR NOT NULL,
            updated_at FLOAT NOT NULL)""",
        """CREATE TABLE item (
            sku VARCHAR NOT NULL PRIMARY KEY,
            description VARCHAR NOT NULL DEFAULT '',
            base_unit VARCHAR NOT NULL,
            units VARCHAR NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'active')""",
        """CREATE TABLE item_code (
            code VARCHAR NOT NULL PRIMARY KEY,
            sku VARCHAR NOT NULL,
            code_kind VARCHAR NOT NULL)""",
        "CREATE INDEX ix_item_code_sku ON item_code (sku)",
    ]
    for statement in statements:
        conn.exec_driver_sql(statement)


def _v2(conn: Connection) -> None:
    """Post-voids: find a transaction's movements fast, and remember which transactions are void.

    ``post_void`` holds one row per voided transaction (a transaction is voided once); a row stays
    after its reversals are stored, so lines of the voided transaction that arrive later are
    reversed too.
    """
    statements = [
        "CREATE INDEX ix_movement_pos_transaction_id ON movement (pos_transaction_id)",
        """CREATE TABLE post_void (
            voided_transaction_id VARCHAR NOT NULL PRIMARY KEY,
            pos_transaction_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            payload VARCHAR NOT NULL,
            created_at FLOAT NOT NULL,
            reversed INTEGER NOT NULL DEFAULT 0)""",
    ]
    for statement in statements:
        conn.exec_driver_sql(statement)


def _v3(conn: Connection) -> None:
    """Store stock view: the WMS position of each ack, and the last stock snapshot.

    ``movement.wms_position`` is where the WMS applied an acked movement (NULL for acks from before
    v3 or from a WMS that gives none: those count as already in any later snapshot).
    ``stock_level`` holds the newest snapshot; ``stock_snapshot`` its one header row.
    """
    statements = [
        "ALTER TABLE movement ADD COLUMN wms_position INTEGER",
        "CREATE INDEX ix_movement_wms_position ON movement (wms_position)",
        """CREATE TABLE stock_level (
            sku VARCHAR NOT NULL,
            location VARCHAR NOT NULL,
            on_hand VARCHAR NOT NULL,
            allocated VARCHAR NOT NULL,
            available VARCHAR,
            PRIMARY KEY (sku, location))""",
        """CREATE TABLE stock_snapshot (
            id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
            store_id VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            as_of VARCHAR NOT NULL,
            pulled_at FLOAT NOT NULL,
            levels INTEGER NOT NULL)""",
    ]
    for statement in statements:
        conn.exec_driver_sql(statement)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3]
CURRENT_VERSION = len(MIGRATIONS)


def migrate(db: Database) -> tuple[int, int]:
    """Bring the file to ``CURRENT_VERSION``; return (version before, version after)."""
    with db.write() as conn:
        before = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    if before > CURRENT_VERSION:
        raise SchemaTooNew(
            f"{db.path} has schema version {before}, newer than this possync understands "
            f"({CURRENT_VERSION}); install the newer possync again or restore a backup."
        )
    for version in range(before + 1, CURRENT_VERSION + 1):
        if before:  # a new file is created, not upgraded: nothing worth telling IT
            log.info("upgrading the outbox %s to schema version %d (all movements are kept)", db.path, version)
        with db.write() as conn:
            MIGRATIONS[version - 1](conn)
            conn.exec_driver_sql(f"PRAGMA user_version={version}")
    if before and before < CURRENT_VERSION:
        log.info("outbox %s upgraded from schema version %d to %d", db.path, before, CURRENT_VERSION)
    return before, CURRENT_VERSION
