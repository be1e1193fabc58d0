"""One entry point for the service actions on every platform: install, uninstall, status, start, stop.

Invariants: every action is a ``Plan`` computed from the platform, the scope, the config file and
the executable, and then carried out; ``--dry-run`` prints the same plan instead. The folders the
sources write to (a file_drop inbox and its archive) are the only ones besides the data folder the
Linux unit may write.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from installer import launchd, systemd, windows
from installer.layout import DEFAULT_ACCOUNT, Layout, Scope, agent_command, layout_for, platform_key
from installer.plan import Plan

if TYPE_CHECKING:
    from agent.config import Config

ACTIONS = ("install", "uninstall", "status", "start", "stop")


@dataclass(frozen=True, slots=True)
class Target:
    """What a service action is about."""

    platform: str
    scope: Scope
    config: PurePath
    executable: str | None = None
    account: str | None = None
    home: PurePath | None = None
    uid: int = 0

    @property
    def layout(self) -> Layout:
        """The folders of this installation."""
        return layout_for(self.platform, self.scope, home=self.home)

    @property
    def service_account(self) -> str:
        """The account the service runs as (system scope)."""
        return self.account or DEFAULT_ACCOUNT[platform_key(self.platform)]


def write_paths(config: Config) -> list[str]:
    """Folders outside the data folder that the agent writes: file_drop inboxes, archives, quarantines."""
    paths: set[str] = set()
    for source in config.sources:
        for key in ("path", "archive", "quarantine"):
            value = getattr(source, key, None)
            if isinstance(value, str) and source.kind == "file_drop":
                paths.add(str((config.base_dir / value).resolve()))
    return sorted(paths)


def plan(
    action: str,
    target: Target,
    *,
    extra_write_paths: list[str] | None = None,
    start: bool = True,
    exists: bool = False,
) -> Plan:
    """Return the plan for ``action`` on ``target`` (``exists``: a Windows service to reconfigure, not create)."""
    layout = target.layout
    command = agent_command(target.config, target.executable)
    key = platform_key(target.platform)
    if key == "win32":
        if action == "install" and exists:
            return windows.reconfigure_plan(layout, command, account=target.service_account, start=start)
        if action == "install":
            return windows.install_plan(layout, command, account=target.service_account, start=start)
        if action == "uninstall":
            return windows.uninstall_plan()
        return windows.action_plan(action)
    if key == "darwin":
        if action == "install":
            return launchd.install_plan(
                layout, command, uid=target.uid, account=target.service_account, home=target.home, start=start
            )
        if action == "uninstall":
            return launchd.uninstall_plan(layout, uid=target.uid, home=target.home)
        return launchd.action_plan(layout, action, uid=target.uid, home=target.home)
    if action == "install":
        return systemd.install_plan(
            layout,
            command,
            account=target.service_account,
            write_paths=extra_write_paths or [],
            home=target.home,
            start=start,
        )
    if action == "uninstall":
        return systemd.uninstall_plan(layout, home=target.home)
    return systemd.action_plan(layout, action)


def installed_here(target: Target) -> bool:
    """Return True when a Windows service must be reconfigured rather than created (others overwrite)."""
    return platform_key(target.platform) == "win32" and windows.service_exists()


def current_target(config: Path, scope: Scope, *, account: str | None = None, executable: str | None = None) -> Target:
    """Return the target on this machine, for this user."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Target(sys.platform, scope, config, executable, account, Path.home(), uid)
