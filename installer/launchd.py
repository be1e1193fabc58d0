"""launchd jobs for the agent on macOS: a LaunchDaemon under the ``_possync`` account, or a LaunchAgent.

Invariants: the daemon runs as an unprivileged role account (created by IT, see
docs/it-deployment.md), starts at boot, is restarted when it exits abnormally, and its stdout and
stderr go to the data folder's log folder. Commands use the ``bootstrap``/``bootout`` verbs of
launchctl (macOS 10.11+).
"""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from pathlib import PurePath, PurePosixPath
from typing import Any

from installer.layout import Layout
from installer.plan import FileSpec, Plan

LABEL = "com.possync.agent"


def plist_path(layout: Layout, home: PurePath | None = None) -> PurePosixPath:
    """Where the job definition goes."""
    if layout.scope == "system":
        return PurePosixPath("/Library/LaunchDaemons") / f"{LABEL}.plist"
    return PurePosixPath(str(home or "~")) / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def domain(layout: Layout, uid: int) -> str:
    """Return the launchctl domain: ``system`` or the user's GUI session."""
    return "system" if layout.scope == "system" else f"gui/{uid}"


def render_plist(layout: Layout, command: Sequence[str], *, account: str = "_possync") -> str:
    """Return the plist text."""
    job: dict[str, Any] = {
        "Label": LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ExitTimeOut": 30,
        "WorkingDirectory": str(layout.data_dir),
        "StandardOutPath": str(layout.log_dir / "launchd.log"),
        "StandardErrorPath": str(layout.log_dir / "launchd.log"),
        "ProcessType": "Background",
        "Umask": 0o027,
    }
    if layout.scope == "system":
        job["UserName"] = account
        job["GroupName"] = account
    return plistlib.dumps(job).decode()


def install_plan(
    layout: Layout,
    command: Sequence[str],
    *,
    uid: int,
    account: str = "_possync",
    home: PurePath | None = None,
    start: bool = True,
) -> Plan:
    """Write the plist; boot out an older copy, then bootstrap (load and start) the job."""
    path = plist_path(layout, home)
    target = f"{domain(layout, uid)}/{LABEL}"
    return Plan(
        files=[FileSpec(path, render_plist(layout, command, account=account))],
        prelude=[["launchctl", "bootout", target]],  # fails when no older copy is loaded
        commands=[["launchctl", "bootstrap", domain(layout, uid), str(path)]] if start else [],
    )


def uninstall_plan(layout: Layout, *, uid: int, home: PurePath | None = None) -> Plan:
    """Boot the job out and remove its plist."""
    return Plan(
        commands=[["launchctl", "bootout", f"{domain(layout, uid)}/{LABEL}"]],
        remove=[plist_path(layout, home)],
        tolerate_failure=True,
    )


def action_plan(layout: Layout, action: str, *, uid: int, home: PurePath | None = None) -> Plan:
    """``start``/``restart`` (load the job if needed, then kickstart), ``stop`` (bootout) or ``status`` (print)."""
    target = f"{domain(layout, uid)}/{LABEL}"
    if action in ("start", "restart"):
        load = [["launchctl", "bootstrap", domain(layout, uid), str(plist_path(layout, home))]]  # fails if loaded
        kick = ["launchctl", "kickstart", *(["-k"] if action == "restart" else []), target]
        return Plan(prelude=load, commands=[kick])
    if action == "stop":
        return Plan(commands=[["launchctl", "bootout", target]])
    return Plan(commands=[["launchctl", "print", target]], tolerate_failure=True)
