"""A real X desktop for tray tests: Xvfb on a free display, a tray host (trayer), screenshots, clicks."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAY_HEIGHT = 32


def artifacts_dir() -> Path:
    """Where tests keep screenshots (``$POSSYNC_ARTIFACTS`` or ``artifacts/`` in the repository)."""
    folder = Path(os.environ.get("POSSYNC_ARTIFACTS", ROOT / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def missing_desktop_tools() -> str | None:
    """Why a tray test cannot run here, or None."""
    for tool in ("Xvfb", "trayer", "xdotool", "dbus-run-session"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs it with apt-get)"
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError) as exc:
        return f"PyGObject/Gtk is not available ({exc}); .ci/run installs it"
    return None


@dataclass
class Desktop:
    """A running virtual display with a tray host."""

    display: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display, "NO_AT_BRIDGE": "1", "PYSTRAY_BACKEND": "gtk"}

    def xdotool(self, *args: str) -> str:
        return subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, check=False, timeout=10
        ).stdout

    def screenshot(self, path: Path, box: tuple[int, int, int, int] | None = None) -> Path:
        from PIL import ImageGrab

        image = ImageGrab.grab(xdisplay=self.display)
        (image.crop(box) if box else image).save(path)
        return path

    def icon_state(self) -> str | None:
        """Which state colour dominates the first docked tray icon (None if none clearly does)."""
        from PIL import ImageGrab

        from agent.tray.icons import COLOURS

        region = ImageGrab.grab(xdisplay=self.display).crop((0, 0, TRAY_HEIGHT + 2, TRAY_HEIGHT)).convert("RGB")
        counts = dict.fromkeys(COLOURS, 0)
        data = region.tobytes()
        for i in range(0, len(data), 3):
            pixel = data[i : i + 3]
            for state, colour in COLOURS.items():
                if sum(abs(a - b) for a, b in zip(pixel, colour, strict=True)) < 60:
                    counts[state] += 1
        best = max(counts, key=lambda s: counts[s])
        return best if counts[best] >= 30 else None

    def open_tray_menu(self) -> None:
        self.xdotool("mousemove", str(TRAY_HEIGHT // 2), str(TRAY_HEIGHT // 2), "click", "3")
        time.sleep(0.8)

    def choose(self, position: int) -> None:
        """Pick the n-th menu item (1-based) of the open menu with the keyboard."""
        self.xdotool("key", *(["Down"] * position), "Return")


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    """Xvfb on a free display plus trayer docked at the top-left corner."""
    reason = missing_desktop_tools()
    if reason:
        pytest.skip(reason)
    read, write = os.pipe()
    # -noreset: without it Xvfb resets when its last client leaves and writes the display number
    # to -displayfd again; with the pipe's reader gone that write kills the server.
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-noreset", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    number = os.read(read, 16).decode().strip()
    display = f":{number}"
    trayer = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "left",
            "--widthtype",
            "request",
            "--height",
            str(TRAY_HEIGHT),
            "--SetDockType",
            "true",
            "--transparent",
            "false",
            "--tint",
            "0xffffff",
        ],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.8)
    try:
        yield Desktop(display)
    finally:
        os.close(read)
        for process in (trayer, xvfb):
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
