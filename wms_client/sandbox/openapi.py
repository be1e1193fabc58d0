"""Print the OpenAPI document of the possync WMS protocol v1 (``python -m wms_client.sandbox.openapi``).

``docs/wms-protocol.openapi.json`` is this output; a test fails when the two differ.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

from wms_client.sandbox.app import Faults, SandboxState, create_app
from wms_client.sandbox.ledger import Ledger


def document() -> dict[str, Any]:
    """Return the protocol's OpenAPI document as generated from the sandbox's routes."""
    ledger = Ledger(Path(":memory:"))
    try:
        # Only the routes are needed; no request is served, so no real token is involved.
        return create_app(SandboxState(ledger=ledger, token=secrets.token_hex(8), faults=Faults())).openapi()
    finally:
        ledger.close()


def render() -> str:
    """Return the document as stable, indented JSON text."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
