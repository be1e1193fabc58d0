"""Resolve secret references (``keyring:SERVICE/USER``, ``env:NAME``, ``file:/path``) at start-up.

Invariants:
- The OS keyring is the default home of secrets; ``env:`` and ``file:`` exist for machines without a
  keyring backend (headless Linux services) and for tests.
- Every resolved value is registered with the log redactor before it is returned, so it can never
  appear in a log line.
- A missing secret is an error that says exactly how to store it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from agent.redact import register_secret

log = logging.getLogger("possync.secrets")


class SecretError(RuntimeError):
    """A secret reference could not be resolved; the message says how to fix it."""


def resolve_secret(ref: str, base_dir: Path | None = None) -> str:
    """Return the secret a reference points to."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise SecretError(f"{ref}: the environment variable {rest} is not set or empty")
    elif scheme == "keyring":
        value = _from_keyring(ref, rest)
    elif scheme == "file":
        value = _from_file(ref, Path(rest) if base_dir is None else base_dir / rest)
    else:
        raise SecretError(f"{ref!r} is not a secret reference (keyring:SERVICE/USER, env:NAME, file:/path)")
    register_secret(value)
    return value


def _from_keyring(ref: str, rest: str) -> str:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    service, _, user = rest.partition("/")
    if not service or not user:
        raise SecretError(f"{ref}: write keyring references as keyring:SERVICE/USER, e.g. keyring:possync/wms")
    try:
        value = keyring.get_password(service, user)
    except NoKeyringError:
        raise SecretError(
            f"{ref}: this machine has no OS keyring backend. On a headless Linux service use "
            "'file:/etc/possync/<name>.secret' (mode 0600) or 'env:NAME' instead; see docs/secrets.md"
        ) from None
    except KeyringError as exc:
        raise SecretError(f"{ref}: the OS keyring refused the lookup: {exc}") from None
    if not value:
        raise SecretError(
            f"{ref}: nothing is stored in the OS keyring for service {service!r}, user {user!r}; "
            f"store it with: keyring set {service} {user}"
        )
    return value


def _from_file(ref: str, path: Path) -> str:
    try:
        info = path.stat()
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"{ref}: cannot read {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s is readable by other users; restrict it with: chmod 600 %s", path, path)
    if not value:
        raise SecretError(f"{ref}: {path} is empty")
    return value
