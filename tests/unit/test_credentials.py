"""`possync credentials` against a test keyring backend, the file fallback and a machine without a keyring."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from agent import credentials
from agent.cli import main
from tests.support.memory_keyring import MemoryKeyring

CONFIG = """
[agent]
store_id = "S001"
api_token = "{api}"
[wms]
kind = "possync"
url = "http://127.0.0.1:1"
token = "{wms}"
"""


def write(tmp_path: Path, wms: str = "keyring:possync/wms", api: str = "keyring:possync/api") -> Path:
    path = tmp_path / "possync.toml"
    path.write_text(CONFIG.format(wms=wms, api=api))
    return path


def test_set_check_delete_use_the_exact_keyring_entries_of_the_config(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, wms="keyring:acme-wms/store-s001")
    monkeypatch.setenv("WMS_SECRET", "s3cret-token")
    assert main(["credentials", "set", "wms", "--config", str(config), "--from-env", "WMS_SECRET"]) == 0
    assert MemoryKeyring.store == {("acme-wms", "store-s001"): "s3cret-token"}
    monkeypatch.setattr("sys.stdin", io.StringIO("api-token-value\n"))
    assert main(["credentials", "set", "api", "--config", str(config), "--stdin"]) == 0
    assert MemoryKeyring.store[("possync", "api")] == "api-token-value"
    assert main(["credentials", "check", "wms", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "s3cret-token" not in out and "api-token-value" not in out
    assert main(["credentials", "delete", "wms", "--config", str(config)]) == 0
    assert ("acme-wms", "store-s001") not in MemoryKeyring.store
    assert main(["credentials", "check", "wms", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "nothing is stored in the OS keyring for service 'acme-wms', user 'store-s001'" in err


def test_without_a_config_the_names_map_to_possync_wms_and_possync_api(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSSYNC_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("V", "value-1234")
    assert main(["credentials", "set", "wms", "--from-env", "V"]) == 0
    assert main(["credentials", "set", "api", "--from-env", "V"]) == 0
    assert set(MemoryKeyring.store) == {("possync", "wms"), ("possync", "api")}


def test_file_references_are_written_0600_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, wms="file:secrets/wms.secret")
    monkeypatch.setenv("V", "file-secret-99")
    assert main(["credentials", "set", "wms", "--config", str(config), "--from-env", "V"]) == 0
    path = tmp_path / "secrets" / "wms.secret"
    assert path.read_text().strip() == "file-secret-99"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "file-secret-99" not in config.read_text()
    assert main(["credentials", "check", "wms", "--config", str(config)]) == 0
    assert main(["credentials", "delete", "wms", "--config", str(config)]) == 0
    assert not path.exists()


def test_headless_machine_without_keyring_gets_the_fallback_in_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert not credentials.keyring_usable()
        monkeypatch.setenv("V", "value-1234")
        assert main(["credentials", "set", "wms", "--config", str(write(tmp_path)), "--from-env", "V"]) == 1
    finally:
        keyring.set_keyring(previous)
    err = capsys.readouterr().err
    assert "no OS keyring backend" in err and "file:/etc/possync/<name>.secret" in err


def test_bad_requests_fail_in_words(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, wms="env:WMS_TOKEN")
    monkeypatch.setenv("V", "value-1234")
    assert main(["credentials", "set", "wms", "--config", str(config), "--from-env", "V"]) == 1
    assert "set in the agent's environment" in capsys.readouterr().err
    monkeypatch.setenv("EMPTY", "")
    assert main(["credentials", "set", "api", "--config", str(config), "--from-env", "EMPTY"]) == 1
    assert "EMPTY is not set or empty" in capsys.readouterr().err
    no_api = tmp_path / "noapi.toml"
    no_api.write_text(CONFIG.format(wms="keyring:possync/wms", api="x").replace('api_token = "x"\n', ""))
    assert main(["credentials", "check", "api", "--config", str(no_api)]) == 1
    assert "agent.api_token is not set" in capsys.readouterr().err
