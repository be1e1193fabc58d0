"""Logging set-up: console plus a rotating file in the data folder, secrets always redacted.

The file is plain text or JSON lines (``agent.log_format``), rotated at 5 MB with 5 old files kept.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from pathlib import Path

from agent.redact import RedactingFilter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_FILE = "possync.log"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 5


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and ``exc`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the (already redacted) record as one line of JSON."""
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    level: str = "info",
    log_dir: Path | None = None,
    *,
    console: bool = True,
    console_level: str | None = None,
    file_format: str = "text",
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
            log_dir / LOG_FILE, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        file_handler.setFormatter(JsonFormatter() if file_format == "json" else formatter)
        file_handler.addFilter(redactor)
        root.addHandler(file_handler)
    for noisy in ("httpx", "httpcore", "watchdog", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
