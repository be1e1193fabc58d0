"""The tray for real: pystray's gtk backend docked in trayer on Xvfb, driven with xdotool."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.desktop import Desktop, artifacts_dir
from tests.support.helpers import AgentProcess, enable_api, free_port, wait_for, write_config
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e
API_TOKEN = "tray-test-api-token-0123"


class Tray:
    """``possync tray`` as a subprocess in a D-Bus session on the virtual desktop."""

    def __init__(self, desktop: Desktop, args: list[str], log: Path, extra_env: dict[str, str]) -> None:
        self.log = log
        handle = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["dbus-run-session", "--", sys.executable, "-m", "agent.cli", "tray", "--poll", "0.5", *args],
            env={**desktop.env, **extra_env, "POSSYNC_API_TOKEN": API_TOKEN},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        wait_for(lambda: "tray shown" in self.text(), timeout=30, what="tray icon shown")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """End the tray and its D-Bus session (the whole process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def test_menu_actions_reach_the_agent_and_the_icon_follows_the_state(
    tmp_path: Path, desktop: Desktop, sandbox: SandboxServer, token: str
) -> None:
    config = write_config(tmp_path, sandbox.url)
    url = enable_api(config, free_port())
    env = {"POSSYNC_TEST_TOKEN": token, "POSSYNC_API_TOKEN": API_TOKEN}
    agent = AgentProcess(config, env).start()
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    wait_for(lambda: _status(api) is not None, what="local API up")
    opened = tmp_path / "opened-urls"
    browser = f"{sys.executable} -c \"import sys; open({str(opened)!r}, 'a').write(sys.argv[1] + chr(10))\" %s"
    tray = Tray(desktop, ["--config", str(config)], tmp_path / "tray.log", {"BROWSER": browser})
    try:
        wait_for(lambda: desktop.icon_state() == "green", what="green icon")
        desktop.open_tray_menu()
        desktop.screenshot(artifacts_dir() / "tray-menu.png", (0, 0, 260, 200))
        desktop.choose(2)  # Pause delivery
        wait_for(lambda: (_status(api) or {}).get("paused") is True, what="agent paused from the tray")
        wait_for(lambda: desktop.icon_state() == "amber", what="amber icon")
        assert "notification: possync: needs attention" in tray.text()

        desktop.open_tray_menu()
        desktop.choose(2)  # now labelled Resume delivery
        wait_for(lambda: (_status(api) or {}).get("paused") is False, what="agent resumed from the tray")
        wait_for(lambda: desktop.icon_state() == "green", what="green again")

        desktop.open_tray_menu()
        desktop.choose(1)  # Sync now
        wait_for(lambda: "action /sync-now: delivery started" in tray.text(), what="sync now reached the agent")

        desktop.open_tray_menu()
        desktop.choose(3)  # Open status page: a one-time sign-in link, never the token
        link = wait_for(lambda: opened.exists() and opened.read_text().strip(), what="browser opened")
        assert "/login?code=" in link and API_TOKEN not in link
        browser_session = httpx.Client(follow_redirects=True)
        assert browser_session.get(link).status_code == 200  # follows to the page, signed in
        assert browser_session.get(f"{url}/api/v1/status").status_code == 200
        browser_session.close()

        agent.stop()
        wait_for(lambda: desktop.icon_state() == "grey", timeout=30, what="grey while the agent is down")
        assert tray.proc.poll() is None, "the tray must keep running without the agent"
        agent = AgentProcess(config, env).start()
        wait_for(lambda: desktop.icon_state() == "green", timeout=30, what="recovered when the agent is back")

        desktop.open_tray_menu()
        desktop.choose(5)  # Quit tray
        assert tray.proc.wait(timeout=15) == 0
    finally:
        tray.stop()
        agent.stop()
        api.close()


def _status(api: httpx.Client) -> dict[str, Any] | None:
    try:
        response = api.get("/api/v1/status")
    except httpx.HTTPError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


class _StatusStub(BaseHTTPRequestHandler):
    """Serves a chosen status record, for screenshots of states that are slow to provoke for real."""

    state = "green"

    def do_GET(self) -> None:
        record = {
            "state": self.state,
            "store_id": "S001",
            "reasons": [f"{self.state} example"],
            "pending": 3,
            "oldest_pending_age_s": 12.0,
            "last_sync_at": None,
            "paused": False,
            "exceptions_open": 0,
        }
        body = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_screenshot_of_each_state(tmp_path: Path, desktop: Desktop) -> None:
    """Docked icon of every state, captured to artifacts/ (scripts/tray-screenshots runs this)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    config = write_config(tmp_path, "http://127.0.0.1:9")
    enable_api(config, 8765)
    tray = Tray(desktop, ["--config", str(config), "--url", url, "--no-notify"], tmp_path / "tray.log", {})
    out = Path(os.environ.get("POSSYNC_TRAY_SHOTS", artifacts_dir()))
    out.mkdir(parents=True, exist_ok=True)
    try:
        for state in ("green", "amber", "red"):
            _StatusStub.state = state
            wait_for(lambda state=state: desktop.icon_state() == state, what=f"{state} icon")
            desktop.screenshot(out / f"tray-docked-{state}.png", (0, 0, 40, 36))
        server.shutdown()
        server.server_close()
        wait_for(lambda: desktop.icon_state() == "grey", timeout=30, what="grey icon")
        desktop.screenshot(out / "tray-docked-grey.png", (0, 0, 40, 36))
    finally:
        tray.stop()
    assert sorted(p.name for p in out.glob("tray-docked-*.png")) == [
        f"tray-docked-{s}.png" for s in ("amber", "green", "grey", "red")
    ]
