"""Where the agent's idle memory goes: resident memory added by each import, in a fresh interpreter.

Run: ``.venv/bin/python bench/rss_profile.py``. Prints a Markdown table: the interpreter alone, then each
library the agent loads (in the order ``possync run`` needs them), then possync's own packages. The
difference between the last line and the agent's idle RSS (``bench/run --only footprint``) is what
the running agent holds beyond its code: threads, SQLite page caches, the item master, buffers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In the order the agent's start-up imports them, so each line is what that module adds.
MODULES = (
    ("pydantic", "config validation, the local API's models (required by sqlmodel and FastAPI)"),
    ("sqlalchemy", "SQLModel's engine and ORM"),
    ("sqlmodel", "the outbox's tables (required dependency)"),
    ("httpx", "WMS client, rest_poll (required dependency)"),
    ("fastapi", "local API: status page, POST /api/v1/transactions, OpenAPI"),
    ("uvicorn", "the local API's HTTP server"),
    ("watchdog.observers", "file_drop folder events (required dependency)"),
    ("serial", "serial_tap (pyserial, required dependency)"),
    ("keyring", "credentials (required dependency)"),
    ("schedule", "housekeeping jobs (required dependency)"),
    ("outbox.queue", "possync: outbox"),
    ("wms_client.possync_http", "possync: WMS client"),
    ("pos_adapters.file_drop", "possync: file sources"),
    ("pos_adapters.serial_tap", "possync: serial tap"),
    ("pos_adapters.rest_poll", "possync: REST polling"),
    ("agent.runtime", "possync: runtime, local API app, delivery"),
)

_CHILD = """
import sys
def rss():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024
print(f"{rss():.1f}")
for name in sys.argv[1:]:
    __import__(name)
    print(f"{rss():.1f}")
"""


def measure() -> list[float]:
    """Return RSS in MB of a fresh interpreter before any import, then after each of ``MODULES``."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, *(m for m, _ in MODULES)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [float(x) for x in result.stdout.split()]


def main() -> int:
    """Print the table (Linux only: it reads /proc/self/status)."""
    if not sys.platform.startswith("linux"):
        print("rss_profile reads /proc/self/status: Linux only", file=sys.stderr)
        return 2
    figures = measure()
    print("| Import | What for | Adds (MB) | Total RSS (MB) |")
    print("|---|---|---|---|")
    print(f"| Python {sys.version.split()[0]} alone | | | {figures[0]:.1f} |")
    for (name, why), before, after in zip(MODULES, figures[:-1], figures[1:], strict=True):
        print(f"| `{name}` | {why} | {after - before:.1f} | {after:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
