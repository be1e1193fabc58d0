"""The support bundle: one zip with the logs, the config (secrets redacted), the status and the versions.

Invariants: nothing secret leaves the machine in it. Every secret the config refers to is resolved
(when it can be) only to register it with the redactor; every text file is passed through the
redactor, and config values of secret keys are replaced by ``***`` even though they are references.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.redact import redact

PACKAGES = (
    "possync",
    "sqlmodel",
    "SQLAlchemy",
    "httpx",
    "watchdog",
    "pyserial",
    "keyring",
    "pystray",
    "fastapi",
    "uvicorn",
    "pydantic",
    "platformdirs",
    "schedule",
)
SECRET_KEY = re.compile(r"""^(\s*[A-Za-z_]*(?:token|password|secret|key)[A-Za-z_]*\s*=\s*).*$""", re.MULTILINE)


def redacted_config(text: str) -> str:
    """Return the config text with every secret key's value replaced and registered secrets removed."""
    return redact(SECRET_KEY.sub(r'\1"***"', text))


def versions() -> dict[str, Any]:
    """possync, Python, the OS and the main packages' versions."""
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        "packages": found,
    }


def _register_secrets(config: Config) -> None:
    from agent import credentials
    from agent.secrets import SecretError, resolve_secret

    for name in credentials.NAMES:
        try:
            resolve_secret(credentials.reference_for(name, config), config.base_dir)
        except (credentials.CredentialError, SecretError):
            continue


def _status(config: Config) -> dict[str, Any]:
    if not config.outbox_path.exists():
        return {"state": "grey", "reasons": ["the agent has not run with this config yet"]}
    from agent.runtime import thresholds
    from agent.status import build_status
    from outbox.queue import Outbox
    from outbox.state import AgentState

    outbox = Outbox.attach(config.outbox_path)
    try:
        return build_status(
            outbox.counts(),
            AgentState(outbox.db).get_all(),
            thresholds(config),
            store_id=config.agent.store_id,
            data_dir=config.data_dir,
        )
    finally:
        outbox.db.close()


def write_bundle(config: Config, output: Path) -> Path:
    """Write the bundle to ``output`` and return its path."""
    _register_secrets(config)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("config/possync.toml", redacted_config(config.path.read_text(encoding="utf-8-sig")))
        log_dir = config.data_dir / "logs"
        for log in sorted(log_dir.glob("*.log*")) if log_dir.is_dir() else []:
            bundle.writestr(f"logs/{log.name}", redact(log.read_text(encoding="utf-8", errors="replace")))
        try:
            status: dict[str, Any] = _status(config)
        except Exception as exc:  # a damaged outbox must not stop the bundle that would help diagnose it
            status = {"error": f"{type(exc).__name__}: {exc}"}
        bundle.writestr("status.json", redact(json.dumps(status, indent=2, default=str)))
        info = {**versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "store_id": config.agent.store_id}
        bundle.writestr("versions.json", json.dumps(info, indent=2))
    return output
