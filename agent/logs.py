"""Logging set-up: console plus a rotating file in the data folder, secrets always redacted."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from agent.redact import RedactingFilter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(
    level: str = "info", log_dir: Path | None = None, *, console: bool = True, console_level: str | None = None
) -> None:
    """Configure the root logger once per process (replacing earlier handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    redactor = RedactingFilter()
    formatter = logging.Formatter(FORMAT)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        if console_level:
            stream.setLevel(console_level.upper())
        stream.addFilter(redactor)
        root.addHandler(stream)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_dir / "possync.log", maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        file_handler.setFormatter(formatter)
        file_handler.addFilter(redactor)
        root.addHandler(file_handler)
    for noisy in ("httpx", "httpcore", "watchdog", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
