"""Run the sandbox WMS on uvicorn in a background thread, able to stop listening for a while.

``refuse(seconds)`` closes the listening socket for real, so clients see "connection refused",
then listens again on the same address with the same ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import uvicorn

from wms_client.sandbox.app import Faults, SandboxState, create_app
from wms_client.sandbox.ledger import Ledger

log = logging.getLogger("possync.sandbox")


class SandboxServer:
    """A sandbox WMS listening on ``host:port`` over a ledger in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        items_csv: Path | None,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """Open the ledger (loading items from ``items_csv`` if given); nothing listens yet.

        ``tls`` is (certificate file, key file): the sandbox then serves HTTPS.
        """
        self.host = host
        self.port = port
        self.tls = tls
        self.ledger = Ledger(Path(data_dir) / "sandbox-wms.sqlite")
        if items_csv is not None:
            self.ledger.load_items_csv(Path(items_csv))
        self.state = SandboxState(ledger=self.ledger, token=token, faults=faults or Faults())
        self.state.refuse = self.refuse
        if self.state.faults.seed is not None:
            self.state.faults.rng.seed(self.state.faults.seed)
        self.app = create_app(self.state)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        """The base URL clients use."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once the socket accepts connections."""
        with self._lifecycle:
            self._start_locked(timeout)

    def _start_locked(self, timeout: float) -> None:
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            ssl_certfile=str(self.tls[0]) if self.tls else None,
            ssl_keyfile=str(self.tls[1]) if self.tls else None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="sandbox-wms", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox WMS could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        if self.port == 0:
            self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread

    def _stop_locked(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def stop(self) -> None:
        """Stop listening and close the ledger."""
        with self._lifecycle:
            self._closed = True
            self._stop_locked()
            self.ledger.close()

    def refuse(self, seconds: float) -> None:
        """Stop listening now and listen again after ``seconds`` (in the background)."""

        def cycle() -> None:
            with self._lifecycle:
                if self._closed:
                    return
                self._stop_locked()
            log.warning("sandbox WMS refusing connections for %.1f s", seconds)
            time.sleep(seconds)
            with self._lifecycle:
                if not self._closed:
                    self._start_locked(10.0)
            log.warning("sandbox WMS listening again on %s", self.url)

        threading.Thread(target=cycle, name="sandbox-refuse", daemon=True).start()
