r"""A real Windows service for the agent, registered with ``sc.exe`` (no pywin32, no NSSM).

Invariants: the service runs as its own virtual account ``NT SERVICE\\possync`` (least privilege,
no password to manage), starts automatically (delayed, after the network), is restarted by the
service control manager after a crash, and its binary path starts ``possync run --windows-service``,
which speaks the SCM protocol itself (``installer.winservice``). The data folder is granted to the
service account with ``icacls``; the secrets folder is readable only by it, SYSTEM and Administrators.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from installer.layout import SERVICE_NAME, Layout
from installer.plan import Plan

DISPLAY_NAME = "possync store agent"
DESCRIPTION = "Captures POS sales, returns and transfers and delivers them to the WMS exactly once."


def bin_path(command: Sequence[str]) -> str:
    """Return the service's binary path: the agent command with ``--windows-service``, each part quoted."""
    return " ".join(f'"{part}"' if (" " in part or "\\" in part) else part for part in [*command, "--windows-service"])


def install_plan(layout: Layout, command: Sequence[str], *, account: str, start: bool = True) -> Plan:
    """Create (or reconfigure) the service, set recovery actions and folder permissions, start it."""
    data, secrets = str(layout.data_dir), str(layout.secrets_dir)
    commands = [
        [
            "sc.exe",
            "create",
            SERVICE_NAME,
            "binPath=",
            bin_path(command),
            "start=",
            "delayed-auto",
            "obj=",
            account,
            "DisplayName=",
            DISPLAY_NAME,
        ],
        ["sc.exe", "description", SERVICE_NAME, DESCRIPTION],
        ["sc.exe", "failure", SERVICE_NAME, "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000"],
        ["sc.exe", "failureflag", SERVICE_NAME, "1"],
        ["icacls", data, "/grant", f"{account}:(OI)(CI)M", "/T", "/Q"],
        [
            "icacls",
            secrets,
            "/inheritance:r",
            "/grant:r",
            f"{account}:(OI)(CI)R",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
            "/T",
            "/Q",
        ],
    ]
    if start:
        commands.append(["sc.exe", "start", SERVICE_NAME])
    return Plan(commands=commands)


def reconfigure_plan(layout: Layout, command: Sequence[str], *, account: str, start: bool = True) -> Plan:
    """Return the upgrade plan (the service exists): stop it and wait, point it at the new binary, start it."""
    commands = [
        ["sc.exe", "config", SERVICE_NAME, "binPath=", bin_path(command), "start=", "delayed-auto", "obj=", account],
    ]
    if start:
        commands.append(["sc.exe", "start", SERVICE_NAME])
    return Plan(prelude=[["net", "stop", SERVICE_NAME]], commands=commands)


def uninstall_plan() -> Plan:
    """Stop and delete the service."""
    return Plan(commands=[["sc.exe", "stop", SERVICE_NAME], ["sc.exe", "delete", SERVICE_NAME]], tolerate_failure=True)


def action_plan(action: str) -> Plan:
    """Return the plan to ``start``, ``restart`` (``net stop`` waits for the stop), ``stop`` or ``status``."""
    if action == "restart":
        return Plan(prelude=[["net", "stop", SERVICE_NAME]], commands=[["sc.exe", "start", SERVICE_NAME]])
    verb = {"start": "start", "stop": "stop", "status": "query"}[action]
    return Plan(commands=[["sc.exe", verb, SERVICE_NAME]], tolerate_failure=action == "status")


def service_exists() -> bool:
    """Return True when the ``possync`` service is registered on this Windows machine."""
    try:
        result = subprocess.run(["sc.exe", "query", SERVICE_NAME], capture_output=True, check=False, timeout=30)
    except OSError:
        return False
    return result.returncode == 0
