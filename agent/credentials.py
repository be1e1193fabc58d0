"""Store, check and delete the agent's two credentials (``wms`` and ``api``) where the config points.

Invariants:
- The config names where each secret lives (``keyring:SERVICE/USER`` or ``file:PATH``); these
  functions write exactly there, so what ``possync run`` resolves is what was stored.
- ``wms`` is the WMS section's secret (``token``, or ``password`` for Tryton); ``api`` is
  ``agent.api_token``. Without a config the defaults are ``keyring:possync/wms`` and ``keyring:possync/api``.
- Secret files are written atomically with mode 0600 in a folder that is not world-readable.
- A secret value is never printed or logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.domain import SECRET_SCHEMES

if TYPE_CHECKING:
    from agent.config import Config

NAMES = ("wms", "api")
DEFAULT_REFS = {"wms": "keyring:possync/wms", "api": "keyring:possync/api"}
UNSAFE_BACKENDS = ("fail.Keyring", "PlaintextKeyring", "EncryptedKeyring", "null.Keyring")


class CredentialError(RuntimeError):
    """A credential could not be stored, found or removed; the message says how to fix it."""


def wms_secret_key(config: Config) -> str | None:
    """Return the key of the WMS section that holds a secret reference (``token`` or ``password``)."""
    for key in type(config.wms).model_fields:
        value = getattr(config.wms, key)
        if isinstance(value, str) and value.startswith(SECRET_SCHEMES):
            return key
    return None


def reference_for(name: str, config: Config | None) -> str:
    """Return the secret reference the credential ``name`` is read from."""
    if name not in NAMES:
        raise CredentialError(f"unknown credential {name!r} (known: {', '.join(NAMES)})")
    if config is None:
        return DEFAULT_REFS[name]
    if name == "api":
        if config.agent.api_token is None:
            raise CredentialError(
                f"{config.path}: agent.api_token is not set, so there is no api credential; "
                'add api_token = "keyring:possync/api" to [agent]'
            )
        return config.agent.api_token
    key = wms_secret_key(config)
    if key is None:
        raise CredentialError(f"{config.path}: the [wms] section has no secret reference")
    return str(getattr(config.wms, key))


def keyring_backend_name() -> str:
    """Return the class of the keyring backend in force, e.g. ``keyring.backends.SecretService.Keyring``."""
    import keyring

    backend = keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def keyring_usable() -> bool:
    """Return True when a real OS keyring backend is available (not the fail, null or plaintext ones)."""
    name = keyring_backend_name()
    if name.endswith("chainer.ChainerBackend"):
        import keyring

        backends = getattr(keyring.get_keyring(), "backends", [])
        return any(not f"{type(b).__module__}.{type(b).__qualname__}".endswith(UNSAFE_BACKENDS) for b in backends)
    return not name.endswith(UNSAFE_BACKENDS)


def _split(ref: str, base_dir: Path | None) -> tuple[str, str, Path | None]:
    scheme, _, rest = ref.partition(":")
    if scheme == "file":
        path = Path(rest)
        return scheme, rest, path if path.is_absolute() or base_dir is None else base_dir / path
    return scheme, rest, None


def store(ref: str, value: str, base_dir: Path | None = None) -> str:
    """Store ``value`` where ``ref`` points; return where, in words."""
    if not value.strip():
        raise CredentialError("refusing to store an empty secret")
    scheme, rest, path = _split(ref, base_dir)
    if scheme == "keyring":
        service, user = _keyring_names(ref, rest)
        _keyring_call("set_password", service, user, value)
        return f"the OS keyring ({keyring_backend_name()}), service {service!r}, user {user!r}"
    if scheme == "file" and path is not None:
        write_secret_file(path, value)
        return f"{path} (mode 0600)"
    raise CredentialError(
        f"{ref}: an env: secret is set in the agent's environment (the service definition), not stored by possync"
    )


def delete(ref: str, base_dir: Path | None = None) -> bool:
    """Remove the secret ``ref`` points to; return False if there was none."""
    scheme, rest, path = _split(ref, base_dir)
    if scheme == "keyring":
        from keyring.errors import PasswordDeleteError

        service, user = _keyring_names(ref, rest)
        try:
            _keyring_call("delete_password", service, user)
        except PasswordDeleteError:
            return False
        return True
    if scheme == "file" and path is not None:
        if not path.exists():
            return False
        path.unlink()
        return True
    raise CredentialError(f"{ref}: an env: secret is removed from the agent's environment, not by possync")


def write_secret_file(path: Path, value: str) -> None:
    """Write a secret file atomically, readable only by its owner (its folder not world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value.strip() + "\n")
    temp.chmod(0o600)
    temp.replace(path)


def _keyring_names(ref: str, rest: str) -> tuple[str, str]:
    service, _, user = rest.partition("/")
    if not service or not user:
        raise CredentialError(f"{ref}: write keyring references as keyring:SERVICE/USER")
    return service, user


def _keyring_call(method: str, *args: str) -> object:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

    try:
        return getattr(keyring, method)(*args)
    except NoKeyringError:
        raise CredentialError(
            "this machine has no OS keyring backend (headless Linux). Use the file fallback: "
            "'possync install' does it for you, or point the config at file:/etc/possync/<name>.secret "
            "and run this command again; see docs/secrets.md"
        ) from None
    except PasswordDeleteError:
        raise
    except KeyringError as exc:
        raise CredentialError(f"the OS keyring refused: {exc}") from None
