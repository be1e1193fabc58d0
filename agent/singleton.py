"""One agent per data folder: an OS file lock that dies with the process (even on SIGKILL)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO


class AlreadyRunning(RuntimeError):
    """Another agent holds this data folder."""


class DataDirUnusable(RuntimeError):
    """The data folder cannot be written (read-only, missing permissions, full)."""


class DataDirLock:
    """An exclusive, non-blocking lock on ``<data_dir>/agent.lock``."""

    def __init__(self, data_dir: Path) -> None:
        """Prepare the lock; nothing is locked yet."""
        self.path = data_dir / "agent.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``AlreadyRunning`` naming the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the process lifetime)
        except OSError as exc:
            raise DataDirUnusable(
                f"the data folder {self.path.parent} cannot be written ({exc.strerror or exc}); possync keeps its "
                "outbox there: make it writable for the agent's account, or set agent.data_dir"
            ) from None
        try:
            _lock(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise AlreadyRunning(f"another possync agent (pid {holder}) is using {self.path.parent}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Release the lock."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
