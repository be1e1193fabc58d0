"""The real agent (``possync run``) as a subprocess: its generated ``possync.toml``, start-up and shutdown.

Secrets follow the documented headless path: the config refers to ``env:`` variables
(``docs/secrets.md``) that are set only in the agent's environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agent.demo import SAMPLE_EXPORT_MAPPING
from bench.common import API_TOKEN, STORE, WMS_TOKEN, free_port, wait_until

WMS_ENV = "POSSYNC_BENCH_WMS_TOKEN"
API_ENV = "POSSYNC_BENCH_API_TOKEN"
IN_SYNC = "capturing receipts from here"  # the serial tap's log line once it follows the line


def csv_source(path: str) -> str:
    """Return a ``file_drop`` CSV source (the sample export's columns), with the default settle times."""
    head = f'[[sources]]\nname = "pos-exports"\nkind = "file_drop"\npath = "{path}"\npattern = "*.csv"\n'
    return head + 'format = "csv"\n' + SAMPLE_EXPORT_MAPPING


def poslog_source(path: str) -> str:
    """Return a ``file_drop`` POSLog source."""
    return f'[[sources]]\nname = "poslog"\nkind = "file_drop"\npath = "{path}"\npattern = "*.xml"\nformat = "poslog"\n'


def journal_source(path: str) -> str:
    """Return a ``journal`` source tailing a JSON lines journal."""
    return f'[[sources]]\nname = "journal"\nkind = "journal"\npath = "{path}"\nformat = "jsonl"\n'


def http_source() -> str:
    """Return an ``http_ingest`` source (``POST /api/v1/transactions`` on the local API)."""
    return '[[sources]]\nname = "register-push"\nkind = "http_ingest"\n'


def serial_source(port: str) -> str:
    """Return a passive ``serial_tap`` source on ``port`` with the built-in generic-58mm template."""
    return f'[[sources]]\nname = "receipt-tap"\nkind = "serial_tap"\nport = "{port}"\ntemplate = "generic-58mm"\n'


def rest_source(url: str, every: str) -> str:
    """Return a ``rest_poll`` source with the shopify-orders preset polling ``url`` every ``every``."""
    return (
        f'[[sources]]\nname = "webshop"\nkind = "rest_poll"\nurl = "{url}"\npreset = "shopify-orders"\n'
        f'every = "{every}"\nauth = {{ type = "header", header = "X-Shopify-Access-Token", token = "env:{API_ENV}" }}\n'
    )


def config_text(wms_url: str, api_port: int, sources: list[str], batch_size: int = 200) -> str:
    """Return a whole ``possync.toml`` for store S001 with the local API on and the given sources."""
    return f"""[agent]
store_id = "{STORE}"
timezone = "America/Chicago"
data_dir = "./data"
api_port = {api_port}
api_token = "env:{API_ENV}"

[wms]
kind = "possync"
url = "{wms_url}"
token = "env:{WMS_ENV}"
batch_size = {batch_size}

[sync]
sla_s = 60

""" + "\n".join(sources)


def config_problems(text: str) -> list[str]:
    """Return the mistakes the product's config validation finds in ``text`` (empty when it is accepted)."""
    import tempfile

    from agent.config import ConfigError, load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "possync.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            return exc.problems
    return []


@dataclass
class AgentRun:
    """One ``possync run`` subprocess in its own folder, its local API and its log."""

    folder: Path
    proc: subprocess.Popen[bytes]
    api: str
    spawned_at: float
    log: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        """Open the client that talks to the agent's local API with the api_token."""
        self.http = httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30)

    @property
    def outbox(self) -> Path:
        """Return the path of the agent's outbox file."""
        return self.folder / "data" / "outbox.sqlite"

    def output(self) -> str:
        """Return what the agent wrote to standard output and error so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` with the end of its log if the agent has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"the agent exited with {self.proc.returncode}:\n{self.output()[-3000:]}")

    def status_ok(self) -> bool:
        """Return True once ``GET /api/v1/status`` answers 200 (raise if the agent died)."""
        self.check_alive()
        try:
            return self.http.get("/api/v1/status", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for the status API; return seconds from spawn until it answered."""
        wait_until(self.status_ok, "the agent's status API", timeout=timeout, interval=0.01)
        return time.perf_counter() - self.spawned_at

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the agent's log contains ``text``."""

        def logged() -> bool:
            self.check_alive()
            return text in self.output()

        wait_until(logged, repr(text), timeout, 0.05)

    def stop(self) -> None:
        """SIGTERM, wait for the clean exit (SIGKILL after 30 s)."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def spawn_agent(folder: Path, wms_url: str, sources: list[str]) -> AgentRun:
    """Write ``possync.toml`` in ``folder`` (validated first) and start ``possync run`` on it."""
    port = free_port()
    text = config_text(wms_url, port, sources)
    problems = config_problems(text)
    if problems:
        raise RuntimeError("the generated config is refused:\n" + "\n".join(problems))
    config = folder / "possync.toml"
    config.write_text(text, encoding="utf-8")
    log = folder / "agent.log"
    env = {**os.environ, WMS_ENV: WMS_TOKEN, API_ENV: API_TOKEN, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        spawned_at = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return AgentRun(folder, proc, f"http://127.0.0.1:{port}", spawned_at, log)
