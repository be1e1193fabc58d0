"""The tray process: polls the local API, shows the state as an icon, and offers the actions.

Invariants:
- The tray never touches the outbox; everything goes through the agent's local API with the token.
- When the agent cannot be reached the icon turns grey and the tray keeps polling, so it recovers by
  itself when the agent is back.
- pystray is imported only here, lazily: importing it picks a backend and fails without a desktop.
"""

from __future__ import annotations

import logging
import threading
import webbrowser
from collections.abc import Callable
from typing import Any

import httpx

from agent.tray.icons import icon_image
from agent.tray.model import TrayView, notification, pause_label, view_for

log = logging.getLogger("possync.tray")


class TrayApp:
    """A pystray icon bound to one agent's local API."""

    def __init__(self, api_url: str, token: str, *, poll_s: float = 5.0, notify: bool = True) -> None:
        """Prepare the HTTP client; nothing is shown until ``run``."""
        self.api_url = api_url.rstrip("/")
        self.poll_s = poll_s
        self.notify_enabled = notify
        self._http = httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=5.0)
        self._stop = threading.Event()
        self.view: TrayView = view_for(None)
        self._icon: Any = None
        self._notify_failed = False

    # -- talking to the agent ----------------------------------------------------------------

    def fetch(self) -> dict[str, Any] | None:
        """Return the agent's status, or None when it cannot be reached."""
        try:
            response = self._http.get("/api/v1/status")
        except httpx.HTTPError:
            return None
        if response.status_code == 401:
            log.error("the agent refused the tray's API token (check agent.api_token for this user)")
            return None
        if response.status_code != 200:
            return None
        data = response.json()
        return data if isinstance(data, dict) else None

    def post(self, path: str) -> str:
        """Ask the agent to do something; return its answer in words."""
        try:
            response = self._http.post(f"/api/v1{path}")
            message = str(response.json().get("message", response.status_code))
        except (httpx.HTTPError, ValueError) as exc:
            message = f"the agent did not answer: {exc}"
        log.info("action %s: %s", path, message)
        self.refresh()
        return message

    def open_page(self, fragment: str = "") -> None:
        """Open the status page in the browser, signed in with a one-time code."""
        url = f"{self.api_url}/"
        try:
            response = self._http.post("/api/v1/login-code")
            if response.status_code == 200:
                url = str(response.json()["url"])
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        log.info("opening the status page")
        webbrowser.open(url + fragment)

    # -- state -------------------------------------------------------------------------------

    def refresh(self) -> TrayView:
        """Poll once and update the icon, tooltip, menu and notifications."""
        previous = self.view
        self.view = view_for(self.fetch())
        if self.view != previous:
            log.info("state %s: %s", self.view.state, self.view.reason)
            if self._icon is not None:
                self._icon.icon = icon_image(self.view.state)
                self._icon.title = self.view.tooltip
                self._icon.update_menu()
        alert = notification(previous, self.view)
        if alert and self.notify_enabled:
            self._notify(*alert)
        return self.view

    def _notify(self, title: str, message: str) -> None:
        log.info("notification: %s - %s", title, message)
        if self._icon is None or self._notify_failed:
            return
        try:
            self._icon.notify(message, title)
        except Exception as exc:  # no notification service in this session: the icon still says it
            self._notify_failed = True
            log.warning("desktop notifications unavailable: %s", exc)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    # -- pystray -----------------------------------------------------------------------------

    def menu(self, pystray: Any) -> Any:
        """Build the menu: Sync now, Pause/Resume, Open status page, Exceptions, Quit tray."""

        def action(fn: Callable[[], object]) -> Callable[[Any, Any], None]:
            return lambda _icon, _item: threading.Thread(target=fn, daemon=True).start()

        toggle = action(lambda: self.post("/resume" if self.view.paused else "/pause"))
        return pystray.Menu(
            pystray.MenuItem("Sync now", action(lambda: self.post("/sync-now"))),
            pystray.MenuItem(lambda _item: pause_label(self.view), toggle),
            pystray.MenuItem("Open status page", action(self.open_page), default=True),
            pystray.MenuItem("Exceptions", action(lambda: self.open_page("#exceptions"))),
            pystray.Menu.SEPARATOR,
            pystray.MenuItem("Quit tray", lambda icon, _item: self.stop()),
        )

    def run(self) -> None:
        """Show the icon and poll until Quit (blocks; run on the main thread)."""
        import pystray

        self.view = view_for(self.fetch())
        self._icon = pystray.Icon("possync", icon_image(self.view.state), self.view.tooltip, menu=self.menu(pystray))
        poller = threading.Thread(target=self._poll, name="tray-poll", daemon=True)

        def setup(icon: Any) -> None:
            icon.visible = True
            log.info("tray shown (backend %s), state %s", type(icon).__module__, self.view.state)
            poller.start()

        try:
            self._icon.run(setup=setup)
        except Exception as exc:
            if not self._stop.is_set():
                raise
            # pystray's gtk backend hides its last notification at exit and fails when the session
            # has no notification service; the tray was already asked to quit, so that is harmless.
            log.debug("ignored while quitting the tray: %s", exc)

    def stop(self) -> None:
        """Remove the icon and end ``run``."""
        self._stop.set()
        if self._icon is not None:
            self._icon.stop()
        self._http.close()
