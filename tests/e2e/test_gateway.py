"""Keys issued in the portal work against the real LiteLLM proxy (two of
them), and the portal sees every request."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import chat, client, issue_key, status_of, until, usage
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_new_key_answers_on_both_proxies_and_its_usage_shows_within_2s(stack: Stack, acme: Tenant) -> None:
    key = issue_key(acme, allowed_routes=["chat"])
    for gw in stack.gateways:
        reply = chat(gw.url, key["key"])
        assert reply.choices[0].message.content == "hello from acme"
        assert reply.usage.total_tokens > 0

    def counted() -> bool:
        rows = usage(acme, group_by="key")["results"]
        return any(r["group"] == key["id"] and r["requests"] == 2 for r in rows)

    waited = until(counted, 2.0)
    print(f"usage visible after {waited:.2f} s")
    row = next(r for r in usage(acme, group_by="key")["results"] if r["group"] == key["id"])
    assert row["label"] == "e2e key" and row["cost"] > 0 and row["errors"] == 0


def test_models_and_model_info_list_only_the_keys_routes(stack: Stack, acme: Tenant, globex: Tenant) -> None:
    acme.client("admin").post(acme.url("routes/"), {
        "name": "other", "deployments": [{"model": "m", "litellm_params": {"mock_response": "x"}}]}, format="json")
    key = issue_key(acme, allowed_routes=["chat"])
    gw = stack.gateways[0]
    models = [m.id for m in client(gw.url, key["key"]).models.list()]
    assert models == ["chat"]
    import httpx

    info = httpx.get(f"{gw.url}/v1/model/info", headers={"x-litellm-api-key": key["key"]}).json()
    assert [m["model_name"] for m in info["data"]] == ["chat"]
    assert info["data"][0]["model_info"]["id"] == "acme/chat"


def test_revocation_reaches_both_proxies_within_1s(stack: Stack, acme: Tenant) -> None:
    key = issue_key(acme)
    for gw in stack.gateways:
        chat(gw.url, key["key"])  # now cached in both proxies
    response = acme.client("owner").post(acme.url(f"keys/{key['id']}/revoke/"))
    assert response.status_code == 200
    for gw in stack.gateways:
        waited = until(lambda gw=gw: status_of(lambda: chat(gw.url, key["key"]))[0] == 401, 1.0, 0.01)
        print(f"{gw.name}: 401 after {waited * 1000:.0f} ms")
    code, message = status_of(lambda: chat(stack.gateways[1].url, key["key"]))
    assert code == 401 and "revoked" in message


def test_each_refusal_gets_its_own_error(stack: Stack, acme: Tenant) -> None:
    gw = stack.gateways[0].url
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    expiring = issue_key(acme, expires_at=soon)
    assert status_of(lambda: chat(gw, expiring["key"]))[0] == 200
    until(lambda: status_of(lambda: chat(gw, expiring["key"]))[0] == 401, 5, 0.2)
    assert "expired" in status_of(lambda: chat(gw, expiring["key"]))[1]

    acme.client("admin").post(acme.url("routes/"), {
        "name": "premium", "deployments": [{"model": "m", "litellm_params": {"mock_response": "$$$"}}]},
        format="json")
    narrow = issue_key(acme, allowed_routes=["chat"])
    code, message = status_of(lambda: chat(gw, narrow["key"], model="premium"))
    assert code == 403 and "may not use the model 'premium'" in message and "chat" in message
    code, message = status_of(lambda: chat(gw, narrow["key"], model="acme/premium"))
    assert code == 404 and "does not exist" in message

    limited = issue_key(acme, rpm_limit=2)
    codes = [status_of(lambda i=i: chat(stack.gateways[i % 2].url, limited["key"]))[0] for i in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429], codes
    assert "2 requests per minute" in status_of(lambda: chat(gw, limited["key"]))[1]

    blocked = issue_key(acme)
    acme.client("owner").post(acme.url(f"keys/{blocked['id']}/block/"))
    until(lambda: status_of(lambda: chat(gw, blocked["key"]))[0] == 403, 1.0)
    assert "blocked" in status_of(lambda: chat(gw, blocked["key"]))[1]

    broke = issue_key(acme, max_budget="0.0001")  # a handful of mock requests
    results = [status_of(lambda: chat(gw, broke["key"])) for _ in range(20)]
    codes = [code for code, _ in results]
    first_refusal = codes.index(429)
    assert first_refusal > 0 and set(codes[first_refusal:]) == {429}, codes
    assert "Budget exceeded for this key" in results[-1][1] and "$0.0001" in results[-1][1]


def test_a_route_edited_in_the_portal_is_served_by_both_proxies_without_restart(stack: Stack, acme: Tenant) -> None:
    key = issue_key(acme)
    pids = [gw.p.pid for gw in stack.gateways if gw.p]
    response = acme.client("admin").patch(acme.url(f"routes/{acme.route.pk}/"), {"deployments": [
        {"model": "gpt-4o-mini", "litellm_params": {"mock_response": "edited answer"}}]}, format="json")
    assert response.status_code == 200
    for gw in stack.gateways:
        until(lambda gw=gw: chat(gw.url, key["key"]).choices[0].message.content == "edited answer", 3)
    created = acme.client("admin").post(acme.url("routes/"), {
        "name": "brand-new", "deployments": [{"model": "m", "litellm_params": {"mock_response": "new route"}}]},
        format="json")
    assert created.status_code == 201
    for gw in stack.gateways:
        until(lambda gw=gw: status_of(lambda: chat(gw.url, key["key"], model="brand-new"))[0] == 200, 3)
    assert [gw.p.pid for gw in stack.gateways if gw.p] == pids


def test_a_failing_deployment_falls_back_to_the_next_route(stack: Stack, acme: Tenant) -> None:
    admin = acme.client("admin")
    admin.post(acme.url("routes/"), {"name": "backup", "deployments": [
        {"model": "m", "litellm_params": {"mock_response": "answer from backup"}}]}, format="json")
    admin.post(acme.url("routes/"), {"name": "flaky", "num_retries": 1, "fallbacks": ["backup"], "deployments": [
        {"model": "m", "litellm_params": {"mock_response": "litellm.InternalServerError"}}]}, format="json")
    key = issue_key(acme, allowed_routes=["flaky"])
    for gw in stack.gateways:
        until(lambda gw=gw: status_of(lambda: chat(gw.url, key["key"], model="flaky"))[0] == 200, 3)
        assert chat(gw.url, key["key"], model="flaky").choices[0].message.content == "answer from backup"


def test_two_organizations_routes_of_the_same_name_never_mix(stack: Stack, acme: Tenant, globex: Tenant) -> None:
    a, g = issue_key(acme), issue_key(globex)
    gw = stack.gateways[0].url
    assert chat(gw, a["key"]).choices[0].message.content == "hello from acme"
    assert chat(gw, g["key"]).choices[0].message.content == "hello from globex"
    assert status_of(lambda: chat(gw, a["key"], model="globex/chat"))[0] == 404
