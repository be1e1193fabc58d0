"""The support bundle and the log files: everything support needs, no secret anywhere."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest

from agent.cli import main
from agent.logs import setup_logging
from tests.support.helpers import write_config

SECRET = "wms-secret-token-7f3a"
BUNDLE_SECRET = "bundle-only-secret-91c2"  # registered by nothing but the bundle's own resolution


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSSYNC_TEST_TOKEN", BUNDLE_SECRET)
    return write_config(tmp_path, "http://127.0.0.1:9")


def test_json_log_lines_with_secrets_redacted(tmp_path: Path) -> None:
    from agent.redact import register_secret

    register_secret(SECRET)
    setup_logging("info", tmp_path / "logs", console=False, file_format="json")
    try:
        logging.getLogger("possync.test").warning("token is %s", SECRET)
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            logging.getLogger("possync.test").exception("failed")
    finally:
        setup_logging("info", console=False)
    lines = (tmp_path / "logs" / "possync.log").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "warning" and first["logger"] == "possync.test" and first["message"] == "token is ***"
    assert "ValueError: bad ***" in second["exc"] and first["ts"][:2] == "20"
    assert SECRET not in "\n".join(lines)


def test_support_bundle_has_logs_config_status_versions_and_no_secret(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "possync.log").write_text(f"2026-01-01 INFO something with {BUNDLE_SECRET} in it\n")
    (logs / "possync.log.1").write_text("older\n")
    text = config.read_text().replace('token = "env:POSSYNC_TEST_TOKEN"', 'token = "env:POSSYNC_TEST_TOKEN"  # wms')
    config.write_text(text)
    out = tmp_path / "bundle.zip"
    assert main(["support-bundle", "--config", str(config), "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with zipfile.ZipFile(out) as bundle:
        names = set(bundle.namelist())
        assert names == {
            "config/possync.toml",
            "logs/possync.log",
            "logs/possync.log.1",
            "status.json",
            "versions.json",
        }
        everything = b"".join(bundle.read(n) for n in names).decode()
        assert BUNDLE_SECRET not in everything
        assert 'token = "***"' in bundle.read("config/possync.toml").decode()
        assert 'store_id = "S001"' in bundle.read("config/possync.toml").decode()
        assert "something with *** in it" in bundle.read("logs/possync.log").decode()
        assert json.loads(bundle.read("status.json"))["state"] == "grey"
        versions = json.loads(bundle.read("versions.json"))
        assert versions["packages"]["possync"] and versions["store_id"] == "S001" and versions["frozen"] is False
