"""Print the local API's OpenAPI document (``python -m agent.api.openapi``).

``docs/local-api.openapi.json`` is this output; a test fails when the two differ.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.api.app import create_app
from pos_adapters.base import SourceContext
from pos_adapters.http_ingest import HttpIngestSettings, HttpIngestSource


def document() -> dict[str, Any]:
    """Return the OpenAPI document of the local API with every source route (no agent needed)."""
    ingest = HttpIngestSource(
        HttpIngestSettings.model_validate({"name": "register-push", "kind": "http_ingest"}),
        SourceContext(store_id="S001", timezone=ZoneInfo("UTC"), base_dir=Path(), data_dir=Path(), location="S001"),
    )
    _, app = create_app(None, secrets.token_hex(8), routers=[ingest.router], schemas=list(ingest.schemas))
    schema: dict[str, Any] = app.openapi()
    return schema


def render() -> str:
    """Return the document as stable, indented JSON text."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
