import pytest

from agent.tray.icons import COLOURS, icon_image, render_all
from agent.tray.model import TOOLTIP_MAX, notification, pause_label, view_for


def status(state: str, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "state": state,
        "store_id": "S001",
        "reasons": [f"{state} reason"],
        "pending": 4,
        "oldest_pending_age_s": 95.0,
        "last_sync_at": "2026-11-20T15:04:00+00:00",
        "paused": False,
        "exceptions_open": 0,
    }
    record.update(extra)
    return record


@pytest.mark.parametrize(
    ("state", "symbol", "headline"),
    [
        ("green", "\u2713", "in sync"),
        ("amber", "!", "needs attention"),
        ("red", "\u2715", "action needed"),
        ("grey", "\u2013", "agent not running"),
    ],
)
def test_every_state_has_its_symbol_headline_and_tooltip(state: str, symbol: str, headline: str) -> None:
    view = view_for(status(state))
    assert (view.state, view.symbol, view.headline) == (state, symbol, headline)
    assert view.tooltip.startswith(f"possync S001: {headline}")
    assert "4 waiting, oldest 95 s" in view.tooltip and "last sync" in view.tooltip
    assert view.reason == f"{state} reason"


def test_unreachable_agent_is_grey_never_the_last_colour() -> None:
    for broken in (None, {}, {"state": "purple"}):
        view = view_for(broken)
        assert view.state == "grey" and view.tooltip == "possync: agent not running"


def test_tooltip_fits_the_windows_limit() -> None:
    view = view_for(status("red", store_id="S" * 200))
    assert len(view.tooltip) <= TOOLTIP_MAX


def test_never_synced_and_no_backlog() -> None:
    view = view_for(status("green", pending=0, oldest_pending_age_s=None, last_sync_at=None))
    assert "0 waiting\nlast sync never" in view.tooltip


@pytest.mark.parametrize(
    ("before", "after", "notified"),
    [
        ("green", "amber", True),
        ("amber", "red", True),
        ("green", "red", True),
        ("red", "grey", True),
        ("amber", "green", False),
        ("red", "amber", False),
        ("red", "red", False),
        ("grey", "green", False),
    ],
)
def test_notifications_only_when_the_state_gets_worse(before: str, after: str, notified: bool) -> None:
    alert = notification(view_for(status(before)), view_for(status(after)))
    assert (alert is not None) is notified
    if alert:
        assert alert == (f"possync: {view_for(status(after)).headline}", f"{after} reason")


def test_first_view_never_notifies() -> None:
    assert notification(None, view_for(status("red"))) is None


def test_pause_label_follows_the_agent() -> None:
    assert pause_label(view_for(status("green"))) == "Pause delivery"
    assert pause_label(view_for(status("amber", paused=True))) == "Resume delivery"


def test_icons_differ_in_shape_not_only_colour(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Compare the icons as greyscale masks: shapes and symbols alone must tell the states apart.
    masks = {
        state: icon_image(state, 32).convert("L").point(lambda v: 255 if v > 200 else 0).tobytes() for state in COLOURS
    }
    assert len(set(masks.values())) == 4
    files = render_all(tmp_path)
    assert sorted(p.name for p in files) == ["tray-amber.png", "tray-green.png", "tray-grey.png", "tray-red.png"]


def test_autostart_entries_per_platform(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import plistlib
    import shlex
    from pathlib import Path

    from agent.tray import autostart

    config = Path("/etc/possync/possync.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    linux = autostart.entry_for("linux", config, tmp_path)
    assert linux.location == str(tmp_path / "xdg" / "autostart" / "possync-tray.desktop")
    exec_line = next(line for line in linux.content.splitlines() if line.startswith("Exec="))
    assert shlex.split(exec_line[5:])[-3:] == ["tray", "--config", str(config)]
    mac = autostart.entry_for("darwin", config, tmp_path)
    plist = plistlib.loads(mac.content.encode())
    assert plist["RunAtLoad"] is True and plist["ProgramArguments"][-3:] == ["tray", "--config", str(config)]
    assert mac.location.endswith("Library/LaunchAgents/com.possync.tray.plist")
    win = autostart.entry_for("win32", config, tmp_path)
    assert win.location == r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\possync-tray"
    assert win.content.endswith(f'"tray" "--config" "{config}"')
    written = autostart.enable(config, "linux")
    assert Path(written.location).read_text() == linux.content
    assert autostart.disable("linux") is True and autostart.disable("linux") is False


def test_reconciliation_drift_beyond_the_threshold_turns_the_tray_red() -> None:
    drifting = status("green", reconcile_day="2026-11-20", reconcile_drift_skus=3, drift_threshold=2)
    view = view_for(drifting)
    assert view.state == "red" and view.symbol == "\u2715"
    assert view.reason.startswith("reconciliation of 2026-11-20: 3 SKU(s) differ")
    assert view_for(status("amber", reconcile_drift_skus=2, drift_threshold=2)).state == "amber"  # at the threshold
    assert view_for(status("green", reconcile_drift_skus=0)).state == "green"
    assert view_for(status("grey", reconcile_drift_skus=9)).state == "grey"  # not running stays grey
