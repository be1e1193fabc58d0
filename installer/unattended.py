"""The unattended install, upgrade and uninstall that fleet tools run (``possync install`` / ``uninstall``).

Invariants:
- One call renders the store's config from the fleet template, stores the credentials, registers
  the service, runs doctor, and only then starts the service; the first failure ends it with a
  reason and a non-zero exit, and nothing after it runs.
- An upgrade (the config is already installed) keeps the installed config (unless told to replace
  it) and never touches the data folder, so the outbox and everything unsent survive.
- Uninstall removes the service and the tray autostart; the data, config and secrets stay unless
  ``purge`` is asked for.
- Secrets go to the OS keyring when the service runs as the installing user and a keyring exists;
  otherwise to 0600 files in the secrets folder, and the installed config points there (``file:``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent import credentials
from agent.config import Config, ConfigError, validate
from installer import render, service
from installer.layout import Scope, layout_for
from installer.plan import PlanFailed, execute

Say = Callable[[str], None]


class InstallFailed(RuntimeError):
    """A step of the unattended install failed; the message says which and why."""


@dataclass(slots=True)
class InstallRequest:
    """Everything one unattended install needs."""

    template: Path
    scope: Scope = "system"
    settings: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(
        default_factory=lambda: {"wms": "POSSYNC_WMS_SECRET", "api": "POSSYNC_API_SECRET"}
    )
    secret_store: str = "auto"  # noqa: S105 (a choice: auto, keyring, file)
    account: str | None = None
    executable: str | None = None
    register_service: bool = True
    start: bool = True
    doctor: bool = True
    tray: bool = False
    replace_config: bool = False


def choose_secret_store(request: InstallRequest) -> str:
    """``keyring`` or ``file`` (see the module's invariants)."""
    if request.secret_store != "auto":  # noqa: S105
        return request.secret_store
    return "keyring" if request.scope == "user" and credentials.keyring_usable() else "file"


def render_config(request: InstallRequest, env: Mapping[str, str], store: str) -> str:
    """Return the store's config text: template, placeholders, settings, data folder, secret references."""
    layout = layout_for(scope=request.scope)
    try:
        text = render.render(request.template.read_text(encoding="utf-8-sig"), env, request.settings)
    except OSError as exc:
        raise InstallFailed(f"cannot read the template {request.template}: {exc.strerror or exc}") from None
    except render.RenderError as exc:
        raise InstallFailed(str(exc)) from None
    raw = tomllib.loads(text)
    if not raw.get("agent", {}).get("data_dir"):
        text = render.set_key(text, "agent.data_dir", str(layout.data_dir))
    if store == "file":
        for name, ref in _references(raw).items():
            if ref.startswith("keyring:"):
                text = render.replace_reference(text, ref, f"file:{layout.secrets_dir / f'{name}.secret'}")
    return text


def _references(raw: dict[str, object]) -> dict[str, str]:
    agent = raw.get("agent") if isinstance(raw.get("agent"), dict) else {}
    wms = raw.get("wms") if isinstance(raw.get("wms"), dict) else {}
    refs: dict[str, str] = {}
    if isinstance(agent, dict) and isinstance(agent.get("api_token"), str):
        refs["api"] = agent["api_token"]
    if isinstance(wms, dict):
        for key in ("token", "password"):
            if isinstance(wms.get(key), str):
                refs["wms"] = wms[key]
                break
    return refs


def _check(text: str, path: Path) -> Config:
    try:
        return validate(tomllib.loads(text), path, text)
    except ConfigError as exc:
        raise InstallFailed("the rendered config has problems:\n  " + "\n  ".join(exc.problems)) from None


def install(request: InstallRequest, env: Mapping[str, str] | None = None, say: Say = print) -> Config:
    """Install or upgrade; return the installed config. Raise ``InstallFailed`` at the first failure."""
    env = dict(os.environ) if env is None else dict(env)
    if "agent.store_id" in request.settings:  # --store-id also fills a ${POSSYNC_STORE_ID} placeholder
        env["POSSYNC_STORE_ID"] = request.settings["agent.store_id"]
    layout = layout_for(scope=request.scope)
    target = Path(layout.config_file)
    store = choose_secret_store(request)
    upgrade = target.exists() and not request.replace_config
    if upgrade:
        say(f"upgrade: keeping the installed config {target} (and the data folder)")
        text = target.read_text(encoding="utf-8")
    else:
        text = render_config(request, env, store)
    config = _check(text, target)
    account = request.account or service.current_target(target, request.scope).service_account
    system_linux = request.scope == "system" and sys.platform.startswith("linux")
    if system_linux and request.register_service:
        _ensure_linux_account(account, layout_for(scope="system").data_dir.as_posix(), say)
    system_linux = system_linux and _account_exists(account)  # files are owned by the account when there is one
    if not upgrade:
        _write_config(target, text, account if system_linux else None)
        say(f"config written: {target}")
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    if system_linux:
        shutil.chown(config.data_dir, account, account)
    _store_credentials(config, request, env, account if system_linux else None, say)
    if request.register_service:
        here = service.current_target(target, request.scope, account=request.account, executable=request.executable)
        plan = service.plan(
            "install",
            here,
            extra_write_paths=service.write_paths(config),
            start=False,
            exists=service.installed_here(here),
        )
        try:
            execute(plan)
        except PlanFailed as exc:
            raise InstallFailed(f"registering the service failed: {exc}") from None
        say("service registered")
    if request.tray:
        from agent.tray import autostart

        say(f"tray autostart: {autostart.enable(target).location}")
    if request.doctor:
        from agent.doctor import run_checks

        checks = run_checks(target)
        for check in checks:
            say(check.line())
        failed = [c for c in checks if c.status == "fail"]
        if failed:
            raise InstallFailed(
                f"doctor found {len(failed)} problem(s); the service was not started: "
                + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            )
    if request.register_service and request.start:
        try:  # restart: after an upgrade the old executable may still be running
            execute(service.plan("restart", service.current_target(target, request.scope)))
        except PlanFailed as exc:
            raise InstallFailed(f"starting the service failed: {exc}") from None
        say("service started")
    return config


def _write_config(target: Path, text: str, group: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.chmod(0o640)
    if group:
        shutil.chown(temp, "root", group)
    temp.replace(target)


def _store_credentials(
    config: Config, request: InstallRequest, env: Mapping[str, str], owner: str | None, say: Say
) -> None:
    from agent.secrets import SecretError, resolve_secret

    for name in credentials.NAMES:
        try:
            ref = credentials.reference_for(name, config)
        except credentials.CredentialError:
            continue
        variable = request.secret_env.get(name, "")
        value = env.get(variable, "") if variable else ""
        if not value:
            try:
                resolve_secret(ref, config.base_dir)
            except SecretError:
                raise InstallFailed(
                    f"credential {name}: none is stored yet and ${variable} is not set; "
                    f"set {variable} for the install (it is stored in {ref}, never in the config)"
                ) from None
            say(f"credential {name}: already stored ({ref}), kept")
            continue
        if ref.startswith("env:"):
            say(f"credential {name}: {ref} is read from the service's environment; set it there")
            continue
        try:
            where = credentials.store(ref, value, config.base_dir)
        except credentials.CredentialError as exc:
            raise InstallFailed(f"credential {name}: {exc}") from None
        if owner and ref.startswith("file:"):
            shutil.chown(ref.removeprefix("file:"), owner, owner)
        say(f"credential {name}: stored in {where}")


def _account_exists(account: str) -> bool:
    return subprocess.run(["id", "-u", account], capture_output=True, check=False).returncode == 0


def _ensure_linux_account(account: str, home: str, say: Say) -> None:
    if _account_exists(account):
        return
    from installer.plan import Plan
    from installer.systemd import account_commands

    try:
        execute(Plan(commands=account_commands(account, layout_for(scope="system"))))
    except PlanFailed as exc:
        raise InstallFailed(f"creating the service account {account} failed: {exc}") from None
    say(f"service account {account} created (no login, home {home})")


def uninstall(
    scope: Scope, *, purge: bool = False, config_path: Path | None = None, service_too: bool = True, say: Say = print
) -> None:
    """Remove the service and the tray autostart; with ``purge`` also the data, config and secrets."""
    layout = layout_for(scope=scope)
    target = config_path or Path(layout.config_file)
    if service_too:
        execute(service.plan("uninstall", service.current_target(target, scope)))
        say("service removed")
    from agent.tray import autostart

    try:
        if autostart.disable():
            say("tray autostart removed")
    except OSError:
        pass
    if not purge:
        say(f"kept the config {target} and the data folder (the outbox); add --purge to remove them")
        return
    from agent.config import load_config

    try:
        config = load_config(target)
    except ConfigError:
        config = None
    if config is not None:
        for name in credentials.NAMES:
            with contextlib.suppress(credentials.CredentialError):
                credentials.delete(credentials.reference_for(name, config), config.base_dir)
        shutil.rmtree(config.data_dir, ignore_errors=True)
        say(f"removed the data folder {config.data_dir}")
    for folder in {Path(layout.data_dir), Path(layout.secrets_dir)}:
        shutil.rmtree(folder, ignore_errors=True)
    target.unlink(missing_ok=True)
    say(f"removed the config {target}")
