"""``possync doctor``'s checks: config, credentials, WMS reachability and auth, folders, serial ports, disk, clock.

Invariants: each check returns one ``Check`` with a status (``ok``, ``warn``, ``fail``), what was
found and, when not ok, the fix in words; a check never raises and never prints a secret. The
checks read and probe, and change nothing but a probe file they remove at once.
"""

from __future__ import annotations

import email.utils
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config, ConfigError, load_config

MAX_CLOCK_SKEW_S = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check."""

    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""

    def line(self) -> str:
        """Return the check as one line: status, name, what was found, and the fix."""
        text = f"{self.status.upper():<4} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix and self.status != "ok" else text


def run_checks(config_path: Path, *, timeout: float = 5.0) -> list[Check]:
    """Every check for the config at ``config_path`` (only the config check when it does not load)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fix = "correct the lines named above; 'possync run' refuses to start until then"
        return [Check("config", "fail", f"{len(exc.problems)} problem(s): " + "; ".join(exc.problems), fix)]
    checks = [Check("config", "ok", f"{config.path} is valid ({len(config.sources)} source(s))")]
    probes: list[tuple[str, Callable[[Config], Iterator[Check]]]] = [
        ("credentials", _credentials),
        ("folders", _folders),
        ("serial", _serial_ports),
        ("disk", _disk),
        ("wms", lambda c: _wms(c, timeout)),
    ]
    for name, probe in probes:
        checks.extend(_guard(name, probe, config))
    return checks


def _guard(name: str, probe: Callable[[Config], Iterator[Check]], config: Config) -> list[Check]:
    try:
        return list(probe(config))
    except Exception as exc:  # a check that breaks must still leave a line, not a traceback
        return [Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {exc}", "report this to IT")]


def _credentials(config: Config) -> Iterator[Check]:
    from agent import credentials
    from agent.secrets import SecretError, resolve_secret

    for name in credentials.NAMES:
        try:
            ref = credentials.reference_for(name, config)
        except credentials.CredentialError:
            continue  # no api_token: the local API is off, nothing to check
        try:
            resolve_secret(ref, config.base_dir)
        except SecretError as exc:
            fix = f"possync credentials set {name} --config {config.path}"
            if ref.startswith("env:"):
                fix = f"set {ref[4:]} in the service's environment"
            yield Check(f"credentials {name}", "fail", str(exc), fix)
        else:
            yield Check(f"credentials {name}", "ok", f"stored and readable ({ref})")


def _writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder``, else why not."""
    probe = folder / f".possync-doctor-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _folders(config: Config) -> Iterator[Check]:
    data = config.data_dir
    existing = next((p for p in (data, *data.parents) if p.exists()), None)
    problem = _writable(data if data.exists() else existing) if existing else "no existing parent"
    if problem:
        yield Check(
            "folder data_dir",
            "fail",
            f"{data} cannot be written ({problem})",
            f"make {data} writable for the agent's account (e.g. chown -R possync: {data})",
        )
    else:
        yield Check("folder data_dir", "ok", f"{data} is writable")
    for source in config.sources:
        for key in ("path", "archive", "quarantine"):
            value = getattr(source, key, None)
            if not isinstance(value, str):
                continue
            path = (config.base_dir / value).resolve()
            name = f"folder {source.name}.{key}"
            if source.kind == "journal":
                if not os.access(path, os.R_OK):
                    yield Check(
                        name, "fail", f"{path} is missing or not readable", f"let the agent's account read {path}"
                    )
                else:
                    yield Check(name, "ok", f"{path} is readable")
                continue
            if not path.is_dir():
                yield Check(
                    name,
                    "warn",
                    f"{path} does not exist yet (the agent creates it)",
                    f"create {path} so the POS can write into it",
                )
                continue
            problem = _writable(path)
            if problem:
                yield Check(
                    name,
                    "fail",
                    f"{path} cannot be written ({problem})",
                    f"give the agent's account write access to {path}",
                )
            else:
                yield Check(name, "ok", f"{path} is writable")


def _serial_ports(config: Config) -> Iterator[Check]:
    import serial

    for source in config.sources:
        if source.kind != "serial_tap":
            continue
        for key in ("port", "passthrough"):
            url = getattr(source, key, None)
            if not url:
                continue
            name = f"serial {source.name}.{key}"
            try:
                port = serial.serial_for_url(url, do_not_open=True)
                port.open()
                port.close()
            except (serial.SerialException, OSError, ValueError) as exc:
                text = str(exc)
                fix = f"check the cable and that {url} exists"
                if "ermission" in text:
                    fix = "add the agent's account to the serial group (Linux: usermod -aG dialout possync)"
                elif "busy" in text.lower() or "lock" in text.lower():
                    fix = "another program (or the running agent) holds the port; stop it to test"
                yield Check(name, "fail", f"{url}: {text}", fix)
            else:
                yield Check(name, "ok", f"{url} opens")


def _disk(config: Config) -> Iterator[Check]:
    folder = next(p for p in (config.data_dir, *config.data_dir.parents) if p.exists())
    free_mb = shutil.disk_usage(folder).free / 1e6
    need = config.sync.disk_min_free_mb
    if free_mb < need:
        yield Check(
            "disk",
            "fail",
            f"{free_mb:.0f} MB free at {folder}, below sync.disk_min_free_mb ({need:.0f} MB)",
            f"free space on the disk of {folder}",
        )
    else:
        yield Check("disk", "ok", f"{free_mb:.0f} MB free at {folder} (minimum {need:.0f} MB)")


def _wms(config: Config, timeout: float) -> Iterator[Check]:
    from agent.secrets import SecretError, resolve_secret
    from wms_client.base import REGISTRY, WmsAuthError, WmsUnavailable

    url = str(getattr(config.wms, "url", ""))
    try:
        client = REGISTRY[config.wms.kind].build(
            config.wms, config.agent.store_id, lambda ref: resolve_secret(ref, config.base_dir)
        )
    except SecretError as exc:
        yield Check("wms", "fail", f"not tried: {exc}", "store the wms credential first")
        return
    try:
        seconds = client.ping()
    except WmsAuthError as exc:
        yield Check(
            "wms",
            "fail",
            f"{url} is reachable but {exc}",
            f"store the current WMS credential: possync credentials set wms --config {config.path}",
        )
    except WmsUnavailable as exc:
        yield Check(
            "wms",
            "fail",
            f"{url}: {exc}",
            "check wms.url, the network and firewall between this PC and the WMS, and that the WMS is up",
        )
    else:
        yield Check("wms", "ok", f"{url} reachable, credentials accepted ({seconds * 1000:.0f} ms)")
    finally:
        client.close()
    if url:
        yield _clock(url, timeout)


def _clock(url: str, timeout: float) -> Check:
    import httpx

    try:
        sent = time.time()
        response = httpx.get(url, timeout=timeout)
        received = time.time()
    except httpx.HTTPError as exc:
        return Check("clock", "warn", f"not checked: the WMS did not answer ({exc})", "fix the wms check first")
    header = response.headers.get("date")
    parsed = email.utils.parsedate_to_datetime(header) if header else None
    if parsed is None:
        return Check("clock", "warn", "not checked: the WMS sends no Date header", "compare the clock with NTP by hand")
    skew = (sent + received) / 2 - parsed.timestamp()
    if abs(skew) > MAX_CLOCK_SKEW_S:
        ahead = "ahead of" if skew > 0 else "behind"
        return Check(
            "clock",
            "fail",
            f"this PC's clock is {abs(skew):.0f} s {ahead} the WMS's",
            "turn on time synchronisation (Linux: timedatectl set-ntp true; Windows: w32tm /resync)",
        )
    return Check("clock", "ok", f"within {abs(skew):.0f} s of the WMS's clock")
