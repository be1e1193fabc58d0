"""What `possync service` writes and runs on each platform, checked exactly (Windows and macOS included)."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import platformdirs
import pytest

from installer import service, systemd, windows, winservice
from installer.layout import agent_command, layout_for

EXE = "/opt/possync/possync"
CONFIG = PurePosixPath("/etc/possync/possync.toml")


def test_linux_system_unit_runs_the_agent_unprivileged_with_restart_and_hardening() -> None:
    layout = layout_for("linux", "system")
    unit = systemd.render_unit(layout, agent_command(CONFIG, EXE), write_paths=["/srv/pos inbox", "/var/lib/possync"])
    lines = unit.splitlines()
    assert f"ExecStart={EXE} run --config /etc/possync/possync.toml" in lines
    for expected in (
        "User=possync",
        "Group=possync",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "StateDirectory=possync",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SupplementaryGroups=dialout",
        "WorkingDirectory=/var/lib/possync",
        "WantedBy=multi-user.target",
        "ReadWritePaths=/var/lib/possync '-/srv/pos inbox'",
    ):
        assert expected in lines, expected


def test_linux_user_unit_has_no_account_switch_and_starts_with_the_session(tmp_path: Path) -> None:
    layout = layout_for("linux", "user", home=PurePosixPath("/home/ann"), env={})
    unit = systemd.render_unit(layout, agent_command(layout.config_file, EXE))
    assert "User=" not in unit and "ProtectSystem" not in unit
    assert "WantedBy=default.target" in unit.splitlines()
    assert f"ExecStart={EXE} run --config /home/ann/.config/possync/possync.toml" in unit.splitlines()
    plan = systemd.install_plan(layout, [EXE, "run"], home=PurePosixPath("/home/ann"))
    assert plan.files[0].path == PurePosixPath("/home/ann/.config/systemd/user/possync.service")
    assert plan.commands == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "possync.service"],
        ["systemctl", "--user", "restart", "possync.service"],
    ]


def test_linux_system_plans_for_every_action() -> None:
    target = service.Target("linux", "system", CONFIG, EXE)
    install = service.plan("install", target, start=False)
    assert install.files[0].path == PurePosixPath("/etc/systemd/system/possync.service")
    assert install.commands == [["systemctl", "daemon-reload"], ["systemctl", "enable", "possync.service"]]
    uninstall = service.plan("uninstall", target)
    assert uninstall.commands[0] == ["systemctl", "disable", "--now", "possync.service"]
    assert uninstall.remove == [PurePosixPath("/etc/systemd/system/possync.service")]
    assert service.plan("start", target).commands == [["systemctl", "start", "possync.service"]]
    assert service.plan("stop", target).commands == [["systemctl", "stop", "possync.service"]]
    assert service.plan("status", target).commands == [["systemctl", "status", "--no-pager", "possync.service"]]
    assert service.plan("restart", target).commands == [["systemctl", "restart", "possync.service"]]
    assert "run systemctl enable possync.service" in install.describe()


def test_macos_daemon_plist_and_launchctl_commands() -> None:
    target = service.Target("darwin", "system", PurePosixPath("/Library/Application Support/possync/possync.toml"), EXE)
    plan = service.plan("install", target)
    spec = plan.files[0]
    assert spec.path == PurePosixPath("/Library/LaunchDaemons/com.possync.agent.plist")
    job = plistlib.loads(spec.content.encode())
    assert job["Label"] == "com.possync.agent"
    assert job["ProgramArguments"] == [EXE, "run", "--config", "/Library/Application Support/possync/possync.toml"]
    assert job["UserName"] == "_possync" and job["GroupName"] == "_possync"
    assert job["RunAtLoad"] is True and job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["StandardErrorPath"] == "/Library/Application Support/possync/data/logs/launchd.log"
    assert plan.prelude == [["launchctl", "bootout", "system/com.possync.agent"]]
    assert plan.commands == [["launchctl", "bootstrap", "system", "/Library/LaunchDaemons/com.possync.agent.plist"]]
    assert service.plan("stop", target).commands == [["launchctl", "bootout", "system/com.possync.agent"]]
    restart = service.plan("restart", target)
    assert restart.prelude == [["launchctl", "bootstrap", "system", "/Library/LaunchDaemons/com.possync.agent.plist"]]
    assert restart.commands == [["launchctl", "kickstart", "-k", "system/com.possync.agent"]]
    assert "run launchctl bootout system/com.possync.agent (may fail)" in plan.describe()
    assert service.plan("status", target).commands == [["launchctl", "print", "system/com.possync.agent"]]


def test_macos_agent_is_per_user_in_the_gui_domain() -> None:
    target = service.Target(
        "darwin", "user", PurePosixPath("/Users/ann/x.toml"), EXE, home=PurePosixPath("/Users/ann"), uid=501
    )
    plan = service.plan("install", target)
    job = plistlib.loads(plan.files[0].content.encode())
    assert plan.files[0].path == PurePosixPath("/Users/ann/Library/LaunchAgents/com.possync.agent.plist")
    assert "UserName" not in job
    assert plan.commands[-1] == [
        "launchctl",
        "bootstrap",
        "gui/501",
        "/Users/ann/Library/LaunchAgents/com.possync.agent.plist",
    ]


def test_windows_service_is_created_with_sc_exe_under_a_virtual_account() -> None:
    exe = r"C:\Program Files\possync\possync.exe"
    config = PureWindowsPath(r"C:\ProgramData\possync\possync.toml")
    target = service.Target("win32", "system", config, exe)
    plan = service.plan("install", target)
    bin_path = (
        r'"C:\Program Files\possync\possync.exe" run --config "C:\ProgramData\possync\possync.toml" --windows-service'
    )
    assert plan.commands == [
        [
            "sc.exe",
            "create",
            "possync",
            "binPath=",
            bin_path,
            "start=",
            "delayed-auto",
            "obj=",
            r"NT SERVICE\possync",
            "DisplayName=",
            "possync store agent",
        ],
        ["sc.exe", "description", "possync", windows.DESCRIPTION],
        ["sc.exe", "failure", "possync", "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000"],
        ["sc.exe", "failureflag", "possync", "1"],
        ["icacls", r"C:\ProgramData\possync\data", "/grant", r"NT SERVICE\possync:(OI)(CI)M", "/T", "/Q"],
        [
            "icacls",
            r"C:\ProgramData\possync\secrets",
            "/inheritance:r",
            "/grant:r",
            r"NT SERVICE\possync:(OI)(CI)R",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
            "/T",
            "/Q",
        ],
        ["sc.exe", "start", "possync"],
    ]
    assert not plan.files
    assert service.plan("uninstall", target).commands == [
        ["sc.exe", "stop", "possync"],
        ["sc.exe", "delete", "possync"],
    ]
    assert service.plan("status", target).commands == [["sc.exe", "query", "possync"]]
    assert service.plan("stop", target).commands == [["sc.exe", "stop", "possync"]]
    upgrade = service.plan("install", target, exists=True)
    assert upgrade.prelude == [["net", "stop", "possync"]]  # net stop waits until the service has stopped
    assert upgrade.commands == [
        ["sc.exe", "config", "possync", "binPath=", bin_path, "start=", "delayed-auto", "obj=", r"NT SERVICE\possync"],
        ["sc.exe", "start", "possync"],
    ]
    restart = service.plan("restart", target)
    assert (restart.prelude, restart.commands) == ([["net", "stop", "possync"]], [["sc.exe", "start", "possync"]])


def test_windows_service_reports_states_in_the_order_the_scm_expects() -> None:
    assert [s[0] for s in winservice.status_sequence(0)] == [
        winservice.SERVICE_START_PENDING,
        winservice.SERVICE_RUNNING,
        winservice.SERVICE_STOP_PENDING,
        winservice.SERVICE_STOPPED,
    ]
    running = winservice.status_sequence(0)[1]
    assert running[1] == winservice.SERVICE_ACCEPT_STOP | winservice.SERVICE_ACCEPT_SHUTDOWN
    assert winservice.status_sequence(0)[-1][2] == winservice.NO_ERROR
    assert winservice.status_sequence(1)[-1][2] == winservice.ERROR_SERVICE_SPECIFIC_ERROR


@pytest.mark.skipif(sys.platform == "win32", reason="the non-Windows refusal")
def test_windows_service_mode_refuses_off_windows() -> None:
    with pytest.raises(OSError, match="only on Windows"):
        winservice.run_as_service("possync", lambda stop: 0)


def test_layouts_per_platform() -> None:
    assert layout_for("linux", "system").data_dir == PurePosixPath("/var/lib/possync")
    assert layout_for("linux", "system").config_file == PurePosixPath("/etc/possync/possync.toml")
    win = layout_for("win32", "system", env={"ProgramData": r"D:\PD"})
    assert (win.config_file, win.data_dir, win.secrets_dir) == (
        PureWindowsPath(r"D:\PD\possync\possync.toml"),
        PureWindowsPath(r"D:\PD\possync\data"),
        PureWindowsPath(r"D:\PD\possync\secrets"),
    )
    assert layout_for("darwin", "system").data_dir == PurePosixPath("/Library/Application Support/possync/data")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="platformdirs' Linux answer")
def test_user_layout_is_platformdirs_answer_on_this_platform() -> None:
    layout = layout_for(sys.platform, "user")
    assert Path(layout.data_dir) == platformdirs.user_data_path("possync", appauthor=False)
    assert Path(layout.config_dir) == platformdirs.user_config_path("possync", appauthor=False)


def test_file_drop_folders_become_writable_paths(tmp_path: Path) -> None:
    from agent.config import load_config
    from tests.support.helpers import write_config

    config = load_config(write_config(tmp_path, "http://127.0.0.1:1"))
    assert service.write_paths(config) == [str((tmp_path / "inbox").resolve())]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("scope", ["system", "user"])
def test_generated_units_pass_systemd_analyze_verify(tmp_path: Path, scope: str) -> None:
    layout = layout_for("linux", scope, home=PurePosixPath(str(tmp_path)), env={})  # type: ignore[arg-type]
    unit = tmp_path / "possync.service"
    unit.write_text(
        systemd.render_unit(layout, agent_command(CONFIG, sys.executable), write_paths=["/srv/missing inbox"])
    )
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "possync.service" not in result.stderr, result.stderr  # no warnings about our unit either
    broken = tmp_path / "broken" / "possync.service"
    broken.parent.mkdir()
    broken.write_text(
        unit.read_text().replace("Restart=on-failure", "Restart=sometimes").replace(sys.executable, "possync")
    )
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, check=False).returncode != 0


def test_cli_dry_run_prints_the_plan_for_this_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main
    from tests.support.helpers import write_config

    config = write_config(tmp_path, "http://127.0.0.1:1")
    assert main(["service", "install", "--config", str(config), "--dry-run", "--executable", EXE]) == 0
    out = capsys.readouterr().out
    if sys.platform.startswith("linux"):
        assert "write /etc/systemd/system/possync.service (mode 644)" in out
        assert "run systemctl enable possync.service" in out
    assert main(["service", "stop", "--dry-run"]) == 0
    assert "stop" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal off Windows")
def test_run_as_windows_service_off_windows_fails_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main
    from tests.support.helpers import write_config

    config = write_config(tmp_path, "http://127.0.0.1:1")
    assert main(["run", "--config", str(config), "--windows-service"]) == 1
    assert "--windows-service works only on Windows" in capsys.readouterr().err
