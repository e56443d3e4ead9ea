"""The portal pushes keys, routes and budgets to Redis (the gateway's state)
when a change commits, and `gateway_sync` repairs drift."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from gateway import sync
from gateway.backends.managed import ManagedBackend
from gateway.models import SyncOutbox
from gateway.plugin import contract
from gateway.plugin.sealed import Sealer
from tests.factories import Tenant


@pytest.fixture
def r() -> Any:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


def doc(r: Any, key: str) -> dict[str, Any] | None:
    raw = r.get(key)
    return json.loads(raw) if raw else None


def sha(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@pytest.mark.django_db(transaction=True)
def test_a_new_key_is_in_redis_when_the_api_call_returns(acme: Tenant, r: Any) -> None:
    body = acme.client("owner").post(acme.url("keys/"), {
        "name": "k", "team": acme.team.pk, "project": acme.project.pk, "allowed_routes": ["chat"],
        "rpm_limit": 7, "max_budget": 2, "budget_period": "daily"}, format="json").json()
    pointer = doc(r, contract.hash_doc(sha(body["key"])))
    assert pointer is not None and pointer["key_id"] == body["id"] and pointer["grace_until"] is None
    key = doc(r, contract.key_doc(body["id"]))
    assert key is not None
    assert key["status"] == "active" and key["routes"] == ["chat"] and key["rpm"] == 7
    assert key["budget"] == {"max": 2.0, "soft": None, "period": "daily"}
    assert key["org"] == acme.org.pk and key["team"] == acme.team.pk and key["project"] == acme.project.pk
    assert not SyncOutbox.objects.filter(done_at=None).exists()


@pytest.mark.django_db(transaction=True)
def test_revocation_and_rotation_reach_redis_and_are_announced(acme: Tenant, r: Any) -> None:
    pubsub = r.pubsub()
    pubsub.subscribe(contract.EVENTS)
    pubsub.get_message(timeout=1)
    owner = acme.client("owner")
    rotated = owner.post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": 300}, format="json").json()
    old = doc(r, contract.hash_doc(sha(acme.key_plaintext)))
    assert old is not None and old["key_id"] == acme.key.pk and old["grace_until"] is not None
    assert doc(r, contract.hash_doc(sha(rotated["key"])))["grace_until"] is None  # type: ignore[index]
    owner.post(acme.url(f"keys/{acme.key.pk}/revoke/"))
    assert doc(r, contract.key_doc(acme.key.pk))["status"] == "revoked"  # type: ignore[index]
    events = []
    while (message := pubsub.get_message(timeout=1)) is not None:
        if message["type"] == "message":
            events.append(json.loads(message["data"]))
    key_events = [e for e in events if e["type"] == "key" and e["id"] == acme.key.pk]
    assert len(key_events) >= 2 and sha(acme.key_plaintext) in key_events[0]["hashes"]


@pytest.mark.django_db(transaction=True)
def test_routes_become_one_model_list_with_org_qualified_groups(acme: Tenant, globex: Tenant, r: Any) -> None:
    acme.client("admin").post(acme.url("routes/"), {
        "name": "gpt", "num_retries": 2, "fallbacks": ["chat"], "input_cost_per_million": 2,
        "deployments": [{"credential": acme.credential.pk, "model": "gpt-4o", "priority": 0}]}, format="json")
    models = doc(r, contract.MODELS)
    assert models is not None
    groups = sorted(m["model_name"] for m in models["model_list"])
    assert groups == ["acme/chat", "acme/gpt", "globex/chat"]
    gpt = next(m for m in models["model_list"] if m["model_name"] == "acme/gpt")
    assert gpt["litellm_params"]["model"] == "openai/gpt-4o"
    # sealed for the gateway only: no plaintext secret in Redis
    assert "sk-provider-secret-value" not in r.get(contract.MODELS)
    assert Sealer(settings.GATEWAY_SEALING_KEYS).unseal(gpt["litellm_params"]["api_key"], "api_key") \
        == "sk-provider-secret-value"
    assert gpt["litellm_params"]["input_cost_per_token"] == pytest.approx(2e-6)
    assert gpt["litellm_params"]["order"] == 1
    assert {"acme/gpt": ["acme/chat"]} in models["fallbacks"] and models["retries"]["acme/gpt"] == 2
    org = doc(r, contract.org_doc(acme.org.pk))
    assert org is not None and org["routes"]["gpt"] == {"group": "acme/gpt", "active": True, "teams": None}


@pytest.mark.django_db(transaction=True)
def test_a_push_that_fails_stays_in_the_outbox_and_is_retried(acme: Tenant, r: Any, monkeypatch: Any) -> None:
    def unreachable(self: Any, kind: str, object_id: int) -> None:
        raise redis.ConnectionError("redis is down")

    monkeypatch.setattr(ManagedBackend, "push", unreachable)
    response = acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/block/"))
    assert response.status_code == 200  # the API call succeeds even though the gateway push failed
    pending = SyncOutbox.objects.get(done_at=None)
    assert pending.attempts == 1 and "redis is down" in pending.last_error and pending.next_attempt_at
    monkeypatch.undo()
    SyncOutbox.objects.update(next_attempt_at=None)
    assert sync.drain_outbox() == 1
    assert doc(r, contract.key_doc(acme.key.pk))["status"] == "blocked"  # type: ignore[index]


@pytest.mark.django_db(transaction=True)
def test_an_older_push_never_overwrites_a_newer_document(acme: Tenant, r: Any) -> None:
    backend = ManagedBackend(r)
    name = contract.key_doc(acme.key.pk)
    backend._write(name, {"status": "revoked"}, 10**9)
    backend._write(name, {"status": "active"}, 5)
    assert doc(r, name)["status"] == "revoked"  # type: ignore[index]


@pytest.mark.django_db(transaction=True)
def test_gateway_sync_check_reports_drift_and_push_repairs_it(acme: Tenant, r: Any) -> None:
    assert ManagedBackend(r).drift() == []
    r.delete(contract.key_doc(acme.key.pk))
    r.set(contract.org_doc(acme.org.pk), json.dumps({"slug": "acme", "v": 1}))
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("gateway_sync", "--check", stdout=out)
    assert f"missing {contract.key_doc(acme.key.pk)}" in out.getvalue()
    assert f"stale   {contract.org_doc(acme.org.pk)}" in out.getvalue()
    call_command("gateway_sync", stdout=io.StringIO())
    out = io.StringIO()
    call_command("gateway_sync", "--check", stdout=out)
    assert out.getvalue().strip().endswith("0 difference(s)")
