"""Turn a fleet config template into one store's ``possync.toml``, keeping its comments and layout.

Invariants: ``${NAME}`` placeholders are filled from the environment and a missing one is an error
naming it; ``--set section.key=value`` replaces the key's line in its table (or adds it after the
table header); values are written as TOML strings unless they are TOML numbers or booleans; the
result must still parse, and ``validate`` is left to the caller.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SETTABLE_TABLES = ("agent", "wms", "sync")
ASSIGNMENT = re.compile(r"""^(\s*[a-z_]+\s*=\s*(?:"[^"]*"|'[^']*'|[^#\s]+))(\s+#.*)?$""")


class RenderError(ValueError):
    """The template cannot be turned into a config; the message says why."""


def fill_placeholders(text: str, env: Mapping[str, str]) -> str:
    """Replace every ``${NAME}`` with ``env[NAME]``; raise naming all that are missing."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in env})
    if missing:
        raise RenderError(f"the template needs these environment variables: {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: _escape(env[m.group(1)]), text)


def _escape(value: str) -> str:
    return json.dumps(value)[1:-1]  # safe inside a TOML basic string


def toml_value(raw: str) -> str:
    """Return a command-line value as TOML: numbers and booleans as they are, anything else a string."""
    if raw in ("true", "false") or re.fullmatch(r"-?\d+(\.\d+)?", raw):
        return raw
    return json.dumps(raw)


def set_key(text: str, dotted: str, raw_value: str) -> str:
    """Set ``table.key`` to ``raw_value`` in TOML ``text`` (``agent``, ``wms`` or ``sync`` tables)."""
    table, _, key = dotted.partition(".")
    if table not in SETTABLE_TABLES or not re.fullmatch(r"[a-z_]+", key):
        raise RenderError(f"--set {dotted}: give section.key with section one of {', '.join(SETTABLE_TABLES)}")
    line = f"{key} = {toml_value(raw_value)}"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.fullmatch(rf"\s*\[{table}\]\s*(#.*)?", ln)), None)
    if start is None:
        lines += ["", f"[{table}]", line]
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"\s*{key}\s*=", lines[i]):
            match = ASSIGNMENT.match(lines[i])
            lines[i] = line + (match.group(2) or "" if match else "")
            break
    else:
        lines.insert(start + 1, line)
    return "\n".join(lines) + "\n"


def replace_reference(text: str, old: str, new: str) -> str:
    """Point every use of the secret reference ``old`` at ``new``."""
    return text.replace(f'"{old}"', f'"{new}"').replace(f"'{old}'", f"'{new}'")


def render(template: str, env: Mapping[str, str], settings: Mapping[str, str]) -> str:
    """Fill placeholders, apply ``settings`` (dotted key to value) and check the result parses."""
    text = fill_placeholders(template, env)
    for dotted, value in settings.items():
        text = set_key(text, dotted, value)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RenderError(f"the rendered config is not valid TOML: {exc}") from None
    return text
