"""Planted secrets never leave the keyring/env/file they came from.

A real agent runs with a WMS token (``env:``) and an API token (``file:``), both fresh random
values. A WMS in front of the sandbox then misbehaves in the ways that put text into possync's
records: it rejects events with messages that quote the request's ``Authorization`` header, answers
400/500/401 with bodies that quote it, and the local API is hit with wrong tokens. Afterwards every
output is searched for both tokens: every file the agent wrote (logs, the outbox SQLite file with
its WAL and shared memory, archives, quarantine reasons), ``possync status --json``,
``possync exceptions --json``, the status API, exceptions API, history API, the status page, and
the support bundle.
"""

from __future__ import annotations

import json
import secrets
import tarfile
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from tests.support.chaos import ChaosProxy, _send
from tests.support.helpers import (
    AgentProcess,
    drop,
    enable_api,
    free_port,
    run_cli,
    status_json,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e


class LeakyWms(ChaosProxy):
    """The sandbox behind a WMS that quotes the caller's credentials back in its error messages."""

    def _handle_post(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        mode = self._take_fault() if handler.path.endswith("/movements") else "pass"
        auth = handler.headers.get("Authorization", "")
        if mode == "echo_reject":
            events = json.loads(body)["events"]
            results = [
                {"event_id": e["event_id"], "status": "rejected", "code": "DENIED", "message": f"{auth} may not post"}
                for e in events
            ]
            return _send(handler, 200, json.dumps({"results": results}).encode())
        if mode.startswith("echo_"):
            status = int(mode.split("_")[1])
            message = json.dumps({"code": "ERR", "message": f"request with header Authorization: {auth} failed"})
            return _send(handler, status, message.encode(), {"X-Debug-Auth": auth})
        return super()._handle_post(handler, body)


def archive_texts(path: Path) -> list[bytes]:
    """The bytes of a support bundle and of every member inside it (zip or tar)."""
    data = path.read_bytes()
    out = [data]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as bundle:
            out += [bundle.read(n) for n in bundle.namelist()]
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as bundle:
            out += [bundle.extractfile(m).read() for m in bundle.getmembers() if m.isfile()]  # type: ignore[union-attr]
    return out


@dataclass
class Scenario:
    """What the leaky run left behind: the config, its environment, the planted tokens and every output."""

    config: Path
    env: dict[str, str]
    tokens: tuple[str, str]
    outputs: dict[str, bytes]


def run_leaky_scenario(tmp_path: Path, sandbox: SandboxServer, token: str) -> Scenario:
    wms_token = token  # the sandbox's token, planted in the agent's environment
    api_token = "api-" + secrets.token_urlsafe(18)
    site = tmp_path / "site"
    site.mkdir()
    secret_file = tmp_path / "api.secret"
    secret_file.write_text(api_token)
    secret_file.chmod(0o600)
    proxy = LeakyWms(sandbox.url).start()
    config = write_config(site, proxy.url, batch_size=5)
    config.write_text(config.read_text().replace("timeout_s = 5", "timeout_s = 2"))
    api = enable_api(config, free_port())
    config.write_text(
        config.read_text().replace('api_token = "env:POSSYNC_API_TOKEN"', f'api_token = "file:{secret_file}"')
    )
    env = {"POSSYNC_TEST_TOKEN": wms_token}
    good = {"Authorization": f"Bearer {api_token}"}
    agent = AgentProcess(config, env).start()
    rows = "txn_id,line,timestamp,register,type,item,qty,uom,price,dest\n"
    try:
        wait_for(
            lambda: (site / "data" / "outbox.sqlite").exists() and status_json(config, env).get("item_master_items"),
            timeout=30,
            what="agent up",
        )
        # 1. The WMS rejects every event with a message quoting the Authorization header.
        proxy.fault("echo_reject", 1)
        (site / "a.csv").write_text(
            rows + "".join(f"LEAK-A{i},1,2026-11-20T09:00:00,R1,SALE,SKU-1001,1,EA,1,\n" for i in range(3))
        )
        drop(site / "inbox", site / "a.csv")
        wait_for(lambda: status_json(config, env)["exceptions_open"] >= 3, timeout=30, what="rejections recorded")
        # 2. 400 and 500 answers quoting it (split down to single events, then retried), then a 401.
        for mode, name in (("echo_400", "b"), ("echo_500", "c"), ("echo_401", "d")):
            before = proxy.faulted
            proxy.fault(mode, 2)
            (site / f"{name}.csv").write_text(rows + f"LEAK-{name},1,2026-11-20T09:00:00,R1,SALE,SKU-1001,1,EA,1,\n")
            drop(site / "inbox", site / f"{name}.csv")
            httpx.post(f"{api}/api/v1/sync-now", headers=good)
            wait_for(lambda: proxy.faulted > before, timeout=30, what=f"{mode} answered")  # noqa: B023
        wait_for(lambda: status_json(config, env)["last_error"] or status_json(config, env)["auth_failed"], timeout=20)
        # 3. Wrong tokens at the local API, a wrong sign-in, and a quarantined file.
        for wrong in ("Bearer " + api_token[:-1], api_token, "Bearer " + wms_token):
            assert httpx.get(f"{api}/api/v1/status", headers={"Authorization": wrong}).status_code == 401
        httpx.post(f"{api}/api/v1/login", json={"token": wms_token})
        (site / "inbox" / "broken.csv").write_text("nothing,we,know\n")
        wait_for((site / "inbox" / "quarantine" / "broken.csv.reason.txt").exists, timeout=20)
        proxy.heal()

        outputs: dict[str, bytes] = {
            "status --json": run_cli("status", "--json", "--config", str(config), env=env).stdout.encode(),
            "exceptions --json": run_cli(
                "exceptions", "list", "--all", "--json", "--config", str(config), env=env
            ).stdout.encode(),
            "status": run_cli("status", "--config", str(config), env=env).stdout.encode(),
        }
        assert b"LEAK-A0" in outputs["exceptions --json"], "the exception list is not what this test thinks it is"
        for path in ("/api/v1/status", "/api/v1/exceptions?all=true", "/api/v1/history", "/"):
            outputs[f"GET {path}"] = httpx.get(api + path, headers=good).content
    finally:
        agent.stop()
        proxy.stop()
    # every file the agent wrote or touched, after it stopped (the WAL may be folded in by then: read both times)
    for path in site.rglob("*"):
        if path.is_file():
            outputs[str(path.relative_to(tmp_path))] = path.read_bytes()
    return Scenario(config, env, (wms_token, api_token), outputs)


def assert_no_token(scenario: Scenario, outputs: dict[str, bytes]) -> None:
    for secret in scenario.tokens:
        leaked = [name for name, data in outputs.items() if secret.encode() in data]
        assert not leaked, f"a planted token appears in: {leaked}"


def test_planted_tokens_appear_in_no_output(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    scenario = run_leaky_scenario(tmp_path, sandbox, token)
    assert any(name.endswith("outbox.sqlite") for name in scenario.outputs)
    assert any("possync.log" in name for name in scenario.outputs), sorted(scenario.outputs)
    assert_no_token(scenario, scenario.outputs)


def test_planted_tokens_appear_in_no_support_bundle(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    scenario = run_leaky_scenario(tmp_path, sandbox, token)
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    made = run_cli(
        "support-bundle",
        "--config",
        str(scenario.config),
        "--output",
        str(bundle_dir / "bundle.zip"),
        env=scenario.env,
        cwd=bundle_dir,
    )
    assert made.returncode == 0, made.stderr
    outputs = {"support-bundle output": (made.stdout + made.stderr).encode()}
    bundles = [p for p in bundle_dir.rglob("*") if p.is_file()]
    assert bundles, f"no bundle was written: {made.stdout}"
    for bundle in bundles:
        for m, data in enumerate(archive_texts(bundle)):
            outputs[f"support bundle {bundle.name} member {m}"] = data
    assert_no_token(scenario, outputs)
