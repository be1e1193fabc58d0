"""Small key/value store of runtime state (heartbeat, WMS reachability, last sync, pause).

The running agent writes it; ``possync status`` and other processes read it, so the CLI can tell
the truth about an agent it is not part of. Values are JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select

from outbox.db import Database
from outbox.schema import StateRow, table

S = table(StateRow)


class AgentState:
    """Runtime state shared through the outbox file."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        """Use the outbox's database."""
        self.db = db
        self.clock = clock

    def set(self, **values: Any) -> None:
        """Store each keyword as one state key, in one transaction."""
        if not values:
            return
        now = self.clock()
        rows = [{"key": k, "value": json.dumps(v), "updated_at": now} for k, v in values.items()]
        with self.db.write() as conn:
            conn.execute(insert(S).prefix_with("OR REPLACE"), rows)

    def get_all(self) -> dict[str, Any]:
        """Return every stored key with its value."""
        with self.db.read() as conn:
            return {k: json.loads(v) for k, v in conn.execute(select(S.c.key, S.c.value))}
