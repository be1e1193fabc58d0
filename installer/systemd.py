"""systemd units for the agent: a system service under its own account, or a ``--user`` service.

Invariants: the system unit runs as the unprivileged ``possync`` account with a read-only OS
(``ProtectSystem=strict``) and write access only to the data folder and the folders the sources
write to; it is restarted on failure and stopped with SIGTERM, on which the agent finishes its unit
of work. The user unit runs as the installing user with the same restart rules.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import PurePath, PurePosixPath

from installer.layout import SERVICE_NAME, Layout
from installer.plan import FileSpec, Plan

UNIT = f"{SERVICE_NAME}.service"
SYSTEM_UNIT_DIR = PurePosixPath("/etc/systemd/system")


def unit_path(layout: Layout, home: PurePath | None = None) -> PurePosixPath:
    """Where the unit file goes."""
    if layout.scope == "system":
        return SYSTEM_UNIT_DIR / UNIT
    return PurePosixPath(str(home or PurePosixPath("~"))) / ".config" / "systemd" / "user" / UNIT


def render_unit(
    layout: Layout, command: Sequence[str], *, account: str = "possync", write_paths: Sequence[str] = ()
) -> str:
    """Return the unit file text."""
    lines = [
        "[Unit]",
        "Description=possync store agent (POS to WMS sync)",
        "Documentation=https://github.com/possync/possync/blob/main/docs/it-deployment.md",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={shlex.join(command)}",
        f"WorkingDirectory={layout.data_dir}",
        "Restart=on-failure",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
    ]
    if layout.scope == "system":
        # "-": a folder that does not exist yet must not stop the service from starting
        writable = [str(layout.data_dir), *(f"-{p}" for p in sorted(set(write_paths) - {str(layout.data_dir)}))]
        lines += [
            f"User={account}",
            f"Group={account}",
            "SupplementaryGroups=dialout",  # serial_tap reads /dev/ttyS*, /dev/ttyUSB*
            f"StateDirectory={SERVICE_NAME}",
            "StateDirectoryMode=0750",
            "UMask=0027",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "ReadWritePaths=" + " ".join(shlex.quote(p) for p in writable),
        ]
    lines += ["", "[Install]", "WantedBy=" + ("multi-user.target" if layout.scope == "system" else "default.target")]
    return "\n".join(lines) + "\n"


def _systemctl(layout: Layout, *args: str) -> list[str]:
    return ["systemctl", *(["--user"] if layout.scope == "user" else []), *args]


def install_plan(
    layout: Layout,
    command: Sequence[str],
    *,
    account: str = "possync",
    write_paths: Sequence[str] = (),
    home: PurePath | None = None,
    start: bool = True,
) -> Plan:
    """Write the unit, reload systemd, enable it (and start or restart it)."""
    unit = FileSpec(unit_path(layout, home), render_unit(layout, command, account=account, write_paths=write_paths))
    commands = [_systemctl(layout, "daemon-reload"), _systemctl(layout, "enable", UNIT)]
    if start:
        commands.append(_systemctl(layout, "restart", UNIT))
    return Plan(files=[unit], commands=commands)


def uninstall_plan(layout: Layout, home: PurePath | None = None) -> Plan:
    """Stop and disable the unit, remove its file, reload systemd."""
    return Plan(
        commands=[_systemctl(layout, "disable", "--now", UNIT), _systemctl(layout, "daemon-reload")],
        remove=[unit_path(layout, home)],
        tolerate_failure=True,
    )


def action_plan(layout: Layout, action: str) -> Plan:
    """``start``, ``restart``, ``stop`` or ``status``."""
    verb = {"start": "start", "restart": "restart", "stop": "stop", "status": "status"}[action]
    extra = ["--no-pager"] if action == "status" else []
    return Plan(commands=[_systemctl(layout, verb, *extra, UNIT)], tolerate_failure=action == "status")


def account_commands(account: str, layout: Layout) -> list[list[str]]:
    """Create the service account (system scope) if it does not exist: no login, no home."""
    return [
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            str(layout.data_dir),
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            account,
        ]
    ]
