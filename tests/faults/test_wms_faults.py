"""Every way the WMS or the network can fail, end to end: the status says so, and the ledger ends exact."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_file_drop_e2e import assert_ledger_is_the_export
from tests.support.chaos import ChaosProxy, self_signed_cert
from tests.support.helpers import (
    EXPORT_CSV,
    AgentProcess,
    drop,
    enable_api,
    export_line_count,
    free_port,
    status_json,
    wait_for,
    write_config,
)
from wms_client.sandbox.server import SandboxServer

pytestmark = pytest.mark.e2e


def fast_config(tmp_path: Path, url: str, token_env: str = "POSSYNC_TEST_TOKEN") -> Path:
    config = write_config(tmp_path, url, batch_size=20, token_env=token_env)
    config.write_text(config.read_text().replace("timeout_s = 5", "timeout_s = 1"))
    return config


def status_or_none(config: Path, env: dict[str, str]) -> dict[str, object]:
    if not (config.parent / "data" / "outbox.sqlite").exists():
        return {}  # the agent is still starting
    return status_json(config, env)


def last_error(config: Path, env: dict[str, str]) -> str:
    return str(status_or_none(config, env).get("last_error") or "")


@pytest.mark.parametrize(
    ("mode", "symptom"),
    [
        ("reset", "WMS not reachable"),
        ("hang", "Timeout"),
        ("status:500", "HTTP 500"),
        ("status:502", "HTTP 502"),
        ("status:503", "HTTP 503"),
        ("not_json", "not a result list"),
        ("redirect", "does not follow redirects"),
    ],
)
def test_a_failing_wms_is_shown_and_the_ledger_ends_exact(
    tmp_path: Path, sandbox: SandboxServer, token: str, mode: str, symptom: str
) -> None:
    proxy = ChaosProxy(sandbox.url).start()
    proxy.hang_s = 3
    proxy.fault(mode)
    env = {"POSSYNC_TEST_TOKEN": token}
    config = fast_config(tmp_path, proxy.url)
    agent = AgentProcess(config, env).start()
    try:
        drop(tmp_path / "inbox", EXPORT_CSV)
        wait_for(lambda: symptom in last_error(config, env), timeout=30, what=f"status naming the {mode} fault")
        status = status_json(config, env)
        assert status["wms_reachable"] is False and status["state"] == "amber" and status["pending"] > 0
        assert any("WMS unreachable" in r for r in status["reasons"])
        if mode == "redirect":
            assert (
                proxy.other.authorizations == [] and proxy.other.requests == 0
            )  # never followed, token never sent there
        proxy.heal()
        wait_for(
            lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
            timeout=60,
            what="delivery after the fault",
        )
        assert_ledger_is_the_export(sandbox)
        healthy = wait_for(
            lambda: (s := status_json(config, env))["pending"] == 0 and s["wms_reachable"] and s, timeout=30
        )
        assert healthy["state"] == "green" and healthy["acked"] == export_line_count()
    finally:
        agent.stop()
        proxy.stop()


def test_a_partial_answer_resends_only_the_missing_events(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    proxy = ChaosProxy(sandbox.url).start()
    proxy.fault("partial", count=3)
    env = {"POSSYNC_TEST_TOKEN": token}
    config = fast_config(tmp_path, proxy.url)
    agent = AgentProcess(config, env).start()
    try:
        drop(tmp_path / "inbox", EXPORT_CSV)
        wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=60, what="all delivered")
        wait_for(lambda: status_json(config, env)["pending"] == 0, timeout=30)
        assert proxy.faulted == 3
        assert_ledger_is_the_export(sandbox)  # the missing half was sent again and answered duplicate or accepted
    finally:
        agent.stop()
        proxy.stop()


@pytest.mark.parametrize("http_date", [False, True], ids=["seconds", "http-date"])
def test_throttling_is_honoured(tmp_path: Path, sandbox: SandboxServer, token: str, http_date: bool) -> None:
    admin = {"Authorization": f"Bearer {token}"}
    env = {"POSSYNC_TEST_TOKEN": token}
    config = fast_config(tmp_path, sandbox.url)
    agent = AgentProcess(config, env).start()
    try:
        wait_for(lambda: status_or_none(config, env).get("item_master_items"), what="item master loaded")
        httpx.post(
            f"{sandbox.url}/_sandbox/faults",
            json={"throttle_rate": 1.0, "retry_after_s": 3, "retry_after_http_date": http_date},
            headers=admin,
        )
        drop(tmp_path / "inbox", EXPORT_CSV)
        wait_for(lambda: "HTTP 429" in last_error(config, env), timeout=30, what="throttling shown")
        before = httpx.get(f"{sandbox.url}/_sandbox/stats", headers=admin).json()["pushes"]
        time.sleep(6)
        during = httpx.get(f"{sandbox.url}/_sandbox/stats", headers=admin).json()["pushes"] - before
        assert during <= 3, f"{during} pushes in 6 s against Retry-After: 3"  # the max_retry_delay of 2 s must not win
        httpx.post(f"{sandbox.url}/_sandbox/faults", json={"throttle_rate": 0}, headers=admin)
        wait_for(lambda: sandbox.ledger.stats()["applied"] == export_line_count(), timeout=60)
        assert_ledger_is_the_export(sandbox)
    finally:
        agent.stop()


def test_a_rotated_token_pauses_delivery_until_it_is_stored(tmp_path: Path, sandbox: SandboxServer, token: str) -> None:
    secret = tmp_path / "wms.secret"
    secret.write_text(token)
    secret.chmod(0o600)
    config = fast_config(tmp_path, sandbox.url)
    config.write_text(config.read_text().replace('token = "env:POSSYNC_TEST_TOKEN"', f'token = "file:{secret}"'))
    api = enable_api(config, free_port())
    env = {"POSSYNC_API_TOKEN": "api-token-for-rotation-1"}
    agent = AgentProcess(config, env).start()
    try:
        wait_for(lambda: status_or_none(config, env).get("item_master_items"), what="running")
        httpx.post(
            f"{sandbox.url}/_sandbox/token",
            json={"token": "rotated-token-000000"},
            headers={"Authorization": f"Bearer {token}"},
        )
        drop(tmp_path / "inbox", EXPORT_CSV)
        red = wait_for(
            lambda: (s := status_json(config, env))["auth_failed"] and s, timeout=30, what="credentials refused"
        )
        assert red["state"] == "red" and any("refused possync's credentials" in r for r in red["reasons"])
        assert sandbox.ledger.stats()["applied"] == 0
        secret.write_text("rotated-token-000000")  # IT stores the new token
        httpx.post(f"{api}/api/v1/sync-now", headers={"Authorization": "Bearer api-token-for-rotation-1"})
        wait_for(
            lambda: sandbox.ledger.stats()["applied"] == export_line_count(),
            timeout=60,
            what="delivery with the new token",
        )
        assert_ledger_is_the_export(sandbox)
        assert wait_for(lambda: not (s := status_json(config, env))["auth_failed"] and s)["state"] in ("green", "amber")
    finally:
        agent.stop()


def test_a_certificate_that_does_not_verify_stops_delivery_without_downgrade(tmp_path: Path, token: str) -> None:
    from tests.support.helpers import ITEMS_CSV

    cert, key = self_signed_cert(tmp_path)
    wms = SandboxServer(tmp_path / "wms", ITEMS_CSV, token, port=0, tls=(cert, key))
    wms.start()
    env = {"POSSYNC_TEST_TOKEN": token}
    config = fast_config(tmp_path, wms.url)
    agent = AgentProcess(config, env).start()
    try:
        drop(tmp_path / "inbox", EXPORT_CSV)
        wait_for(
            lambda: "CERTIFICATE_VERIFY_FAILED" in last_error(config, env), timeout=30, what="the TLS failure shown"
        )
        time.sleep(2)
        assert wms.ledger.stats()["applied"] == 0 and status_json(config, env)["wms_reachable"] is False
        agent.stop()
        config.write_text(config.read_text().replace("timeout_s = 1", f'timeout_s = 1\nca_file = "{cert}"'))
        agent = AgentProcess(config, env).start()
        wait_for(
            lambda: wms.ledger.stats()["applied"] == export_line_count(),
            timeout=60,
            what="delivery once the CA is configured",
        )
        assert_ledger_is_the_export(wms)
    finally:
        agent.stop()
        wms.stop()
