"""Serve the local API with uvicorn on a background thread of the agent."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn

log = logging.getLogger("possync.api")


class ApiServer:
    """uvicorn on ``host:port`` in a daemon thread; ``start`` returns once it accepts connections."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        """Prepare; nothing listens yet."""
        self.host = host
        self.port = port
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, name="local-api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Listen; raise ``OSError`` if the address cannot be bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the local API could not listen on {self.host}:{self.port} (is the port in use?)")
            time.sleep(0.01)
        if self.port == 0:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("local API and status page on http://%s:%d/", self.host, self.port)

    def stop(self) -> None:
        """Stop listening."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
