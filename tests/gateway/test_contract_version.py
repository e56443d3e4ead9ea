"""The contract version: the portal's full push writes the version it speaks into Redis; a gateway
whose plugin cannot serve it refuses LLM requests (503 contract_mismatch) with a message saying which
side to upgrade, from its start, and serves again once the versions agree; `GET /portal/health` shows
the versions without a key. Real proxies (tests/e2e/stack.py) and a proxy started for the test."""

from __future__ import annotations

import json
import tomllib
import urllib.error
import urllib.request
from typing import Any

import pytest

from gateway.backends.managed import ManagedBackend
from gateway.plugin import contract, version
from tests.e2e.helpers import chat, status_of, until
from tests.e2e.procs import LOGS, ROOT, Gateway
from tests.e2e.stack import Stack
from tests.factories import make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def health(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/portal/health", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def newer() -> str:
    return json.dumps({"version": contract.CONTRACT_VERSION + 1, "written_at": 0})


def test_contract_problem_names_the_side_to_upgrade() -> None:
    assert contract.contract_problem(None) is None
    assert contract.contract_problem(contract.contract_document(0)) is None
    assert "upgrade the gateway" in (contract.contract_problem(newer()) or "")
    older = json.dumps({"version": contract.CONTRACT_OLDEST - 1})
    assert "upgrade the portal" in (contract.contract_problem(older) or "")
    for bad in ("{", "[]", '{"version": "1"}', '{"version": true}', "{}"):
        assert "cannot be read" in (contract.contract_problem(bad) or ""), bad


def test_the_plugin_version_is_the_portals_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == version.PLUGIN_VERSION


def test_health_shows_versions_and_state_without_a_key(stack: Stack) -> None:
    status, body = health(stack.gateways[0].url)
    assert status == 200, body
    assert body["status"] == "ok" and body["redis"] == "ok" and body["state_loaded"] is True
    assert body["plugin_version"] == version.PLUGIN_VERSION
    assert body["contract_version"] == contract.CONTRACT_VERSION
    assert body["portal_contract_version"] == contract.CONTRACT_VERSION and body["contract_ok"] is True
    assert set(body) == {"status", "plugin_version", "contract_version", "contract_oldest", "portal_contract_version",
                         "contract_ok", "redis", "state_loaded", "litellm_version", "time"}


def test_drift_reports_a_missing_contract_record(stack: Stack) -> None:
    assert not [p for p in ManagedBackend().drift() if "contract" in p]
    stack.client().delete(contract.CONTRACT)
    assert [p for p in ManagedBackend().drift() if p.startswith(f"contract {contract.CONTRACT}")]


def test_a_running_gateway_refuses_a_newer_contract_and_serves_again_after_the_push(stack: Stack) -> None:
    acme = make_tenant("acme")
    gw = stack.gateways[0].url
    assert chat(gw, acme.key_plaintext).choices[0].message.content == "hello from acme"
    stack.client().set(contract.CONTRACT, newer())
    status, body = health(gw)  # the health route reads the record at once (the periodic check: 15 s)
    assert status == 503 and body["status"] == "contract_mismatch" and body["contract_ok"] is False
    assert body["portal_contract_version"] == contract.CONTRACT_VERSION + 1
    assert "upgrade the gateway" in body["message"]
    code, message = status_of(lambda: chat(gw, acme.key_plaintext))
    assert code == 503 and "upgrade the gateway" in message, message
    ManagedBackend().push_all()
    assert health(gw)[0] == 200
    assert chat(gw, acme.key_plaintext).choices[0].message.content == "hello from acme"


def test_a_gateway_started_against_a_newer_contract_refuses_from_its_start(stack: Stack, tmp_path: Any) -> None:
    acme = make_tenant("acme")
    stack.client().set(contract.CONTRACT, newer())
    env = {**stack.env, "PORTAL_GATEWAY_CONTRACT_CHECK_SECONDS": "0.5"}
    gw = Gateway(env, tmp_path / "gw")
    gw.start()
    try:
        gw.wait_ready()
        code, message = status_of(lambda: chat(gw.url, acme.key_plaintext))
        assert code == 503 and "contract version" in message and "upgrade the gateway" in message, message
        log = (LOGS / f"{gw.name}.log").read_text(errors="replace")
        assert "CRITICAL" in log and "contract_mismatch" in log
        ManagedBackend().push_all()  # the portal's release matches again: served without a restart

        def served() -> bool:
            return status_of(lambda: chat(gw.url, acme.key_plaintext))[0] == 200

        until(served, 5, interval=0.2)
        assert health(gw.url)[0] == 200
    finally:
        gw.stop()
