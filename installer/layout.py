"""Where an installed possync keeps its config, data and secret files, per platform and scope.

Invariants: ``system`` scope is the fleet layout (a service account, machine-wide folders);
``user`` scope follows platformdirs' user folders for the account that installs it. The paths are
computed for any platform (generators are unit-tested on Linux for Windows and macOS), and on the
running platform the user-scope folders equal platformdirs' own answer.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Literal

Scope = Literal["system", "user"]
SERVICE_NAME = "possync"
DEFAULT_ACCOUNT = {"linux": "possync", "darwin": "_possync", "win32": r"NT SERVICE\possync"}


@dataclass(frozen=True, slots=True)
class Layout:
    """The folders of one installation."""

    platform: str
    scope: Scope
    config_dir: PurePath
    data_dir: PurePath
    secrets_dir: PurePath

    @property
    def config_file(self) -> PurePath:
        """The installed ``possync.toml``."""
        return self.config_dir / "possync.toml"

    @property
    def log_dir(self) -> PurePath:
        """The rotating log files."""
        return self.data_dir / "logs"


def platform_key(platform: str = sys.platform) -> str:
    """``linux``, ``darwin`` or ``win32`` (other Unixes are treated as Linux)."""
    return platform if platform in ("darwin", "win32") else "linux"


def layout_for(
    platform: str = sys.platform,
    scope: Scope = "system",
    *,
    home: PurePath | None = None,
    env: dict[str, str] | None = None,
) -> Layout:
    """Return the folders for ``platform`` and ``scope``."""
    env = dict(os.environ) if env is None else env
    key = platform_key(platform)
    if key == "win32":
        if scope == "system":
            base = PureWindowsPath(env.get("ProgramData", r"C:\ProgramData")) / "possync"
            return Layout(key, scope, base, base / "data", base / "secrets")
        local = PureWindowsPath(
            env.get("LOCALAPPDATA") or PureWindowsPath(str(home or Path.home())) / "AppData" / "Local"
        )
        return Layout(key, scope, local / "possync", local / "possync", local / "possync" / "secrets")
    posix_home = PurePosixPath(str(home or Path.home()))
    if key == "darwin":
        if scope == "system":
            mac = PurePosixPath("/Library/Application Support/possync")
            return Layout(key, scope, mac, mac / "data", mac / "secrets")
        mac = posix_home / "Library" / "Application Support" / "possync"
        return Layout(key, scope, mac, mac, mac / "secrets")
    if scope == "system":
        return Layout(
            key, scope, PurePosixPath("/etc/possync"), PurePosixPath("/var/lib/possync"), PurePosixPath("/etc/possync")
        )
    config = PurePosixPath(env.get("XDG_CONFIG_HOME") or posix_home / ".config") / "possync"
    data = PurePosixPath(env.get("XDG_DATA_HOME") or posix_home / ".local" / "share") / "possync"
    return Layout(key, scope, config, data, config)


def agent_command(config: PurePath, executable: str | None = None) -> list[str]:
    """Return the command line that runs the agent: the frozen executable, or this Python with ``-m agent.cli``."""
    if executable:
        return [executable, "run", "--config", str(config)]
    if getattr(sys, "frozen", False):
        return [sys.executable, "run", "--config", str(config)]
    return [sys.executable, "-m", "agent.cli", "run", "--config", str(config)]
