import logging
from pathlib import Path

import pytest

from agent.redact import RedactingFilter
from agent.secrets import SecretError, resolve_secret
from tests.support.memory_keyring import MemoryKeyring


def test_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSSYNC_T1", "from-env-123")
    assert resolve_secret("env:POSSYNC_T1") == "from-env-123"
    monkeypatch.delenv("POSSYNC_T1")
    with pytest.raises(SecretError, match="POSSYNC_T1 is not set"):
        resolve_secret("env:POSSYNC_T1")


def test_keyring_secret_and_how_to_store_it(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(SecretError, match="store it with: keyring set possync wms"):
        resolve_secret("keyring:possync/wms")
    memory_keyring.set_password("possync", "wms", "from-keyring-456")
    assert resolve_secret("keyring:possync/wms") == "from-keyring-456"
    with pytest.raises(SecretError, match="SERVICE/USER"):
        resolve_secret("keyring:possync")


def test_no_keyring_backend_points_to_the_fallback() -> None:
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(SecretError, match=r"no OS keyring backend.*file:"):
            resolve_secret("keyring:possync/wms")
    finally:
        keyring.set_keyring(previous)


def test_file_secret_relative_to_the_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "wms.secret"
    secret.write_text("from-file-789\n")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert resolve_secret("file:wms.secret", tmp_path) == "from-file-789"
    assert "chmod 600" in caplog.text
    with pytest.raises(SecretError, match="cannot read"):
        resolve_secret("file:missing.secret", tmp_path)


def test_resolved_secrets_never_reach_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSSYNC_T2", "sup3r-s3cret-value")
    value = resolve_secret("env:POSSYNC_T2")
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "header was Bearer %s", (value,), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "header was Bearer ***"
