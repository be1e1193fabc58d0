"""Start the tray with the user's desktop session: XDG autostart, a macOS LaunchAgent, or the Windows Run key.

Invariants: entries are per user (the tray belongs to the person logged in, not to the service);
``enable`` is idempotent and ``disable`` removes exactly what ``enable`` wrote.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

NAME = "possync-tray"
LABEL = "com.possync.tray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def tray_command(config: Path) -> list[str]:
    """Return the command line that starts the tray for ``config`` (frozen executable, or this Python)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray", "--config", str(config)]
    return [sys.executable, "-m", "agent.cli", "tray", "--config", str(config)]


@dataclass(frozen=True, slots=True)
class Entry:
    """Where an autostart entry lives and what it holds."""

    platform: str
    location: str
    content: str


def entry_for(platform: str, config: Path, home: Path | None = None) -> Entry:
    """Return the autostart entry for ``platform`` (``linux``, ``darwin`` or ``win32``)."""
    home = home or Path.home()
    command = tray_command(config)
    if platform == "win32":
        return Entry(platform, rf"HKCU\{RUN_KEY}\{NAME}", " ".join(f'"{part}"' for part in command))
    if platform == "darwin":
        plist = {
            "Label": LABEL,
            "ProgramArguments": command,
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
        }
        path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        return Entry(platform, str(path), plistlib.dumps(plist).decode())
    base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    desktop = (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=possync status\n"
        "Comment=Shows whether this store is in sync with the warehouse\n"
        f"Exec={shlex.join(command)}\n"
        "X-GNOME-Autostart-enabled=true\n"
        "Terminal=false\n"
    )
    return Entry(platform, str(base / "autostart" / f"{NAME}.desktop"), desktop)


def enable(config: Path, platform: str = sys.platform) -> Entry:
    """Register the tray to start with this user's session; return what was written."""
    entry = entry_for(platform, config)
    if platform == "win32":
        _set_run_value(entry.content)
        return entry
    path = Path(entry.location)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(entry.content, encoding="utf-8")
    return entry


def disable(platform: str = sys.platform) -> bool:
    """Remove the autostart entry; return True if there was one."""
    if platform == "win32":
        return _delete_run_value()
    path = Path(entry_for(platform, Path("-")).location)
    if path.exists():
        path.unlink()
        return True
    return False


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import winreg

    def _set_run_value(command: str) -> None:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, NAME, 0, winreg.REG_SZ, command)

    def _delete_run_value() -> bool:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, NAME)
        except FileNotFoundError:
            return False
        return True

else:

    def _set_run_value(command: str) -> None:
        raise OSError("the Windows Run key exists only on Windows")

    def _delete_run_value() -> bool:
        raise OSError("the Windows Run key exists only on Windows")
