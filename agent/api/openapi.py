"""Print the local API's OpenAPI document (``python -m agent.api.openapi``).

``docs/local-api.openapi.json`` is this output; a test fails when the two differ.
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any

from agent.api.app import create_app


def document() -> dict[str, Any]:
    """Return the OpenAPI document generated from the API's routes (no agent needed)."""
    _, app = create_app(None, secrets.token_hex(8))
    schema: dict[str, Any] = app.openapi()
    schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}]
    return schema


def render() -> str:
    """Return the document as stable, indented JSON text."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
