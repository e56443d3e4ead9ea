"""The litellm-admin backend pushes keys, teams and models through LiteLLM's
management API (a fake LiteLLM held to LiteLLM's own request models:
`tests/gateway/litellm_admin_fake.py`)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone

from gateway import sync, tasks_admin
from gateway.backends.litellm_admin import NO_MODELS, LiteLLMAdminError
from gateway.models import KeyGraceHash, SyncOutbox, VirtualKey
from gateway.services import keys
from portal.access import actor_for_user
from tests.factories import Tenant
from tests.gateway.litellm_admin_fake import (
    FakeLiteLLM,
    admin_backend,
    due_now,
    endpoint,
    expected_models,
    fake,
    issue,
    sha,
)

pytestmark = pytest.mark.django_db(transaction=True)  # pushes run after commit, as in production
__all__ = ["fake"]  # a fixture


def test_every_call_is_a_litellm_route_with_a_valid_body(fake: FakeLiteLLM, acme: Tenant) -> None:
    owner, admin = acme.client("owner"), acme.client("admin")
    key = issue(acme, allowed_routes=["chat"], max_budget="10", soft_budget="8", budget_period="weekly",
                rpm_limit=5, tpm_limit=1000, expires_at=(timezone.now() + dt.timedelta(days=3)).isoformat()).json()
    owner.patch(acme.url(f"keys/{key['id']}/"), {"max_budget": None, "budget_period": "none"}, format="json")
    owner.post(acme.url(f"keys/{key['id']}/rotate/"), {"grace_period_seconds": 0}, format="json")
    for action in ("block", "unblock", "revoke"):
        assert owner.post(acme.url(f"keys/{key['id']}/{action}/")).status_code == 200
    route = admin.post(acme.url("routes/"), {"name": "gpt", "timeout_seconds": 30, "input_cost_per_million": 2,
                                             "deployments": [{"credential": acme.credential.pk, "model": "gpt-4o",
                                                              "priority": 0, "litellm_params": {"rpm": 10}}]},
                       format="json").json()
    admin.patch(acme.url(f"routes/{route['id']}/"), {"deployments": [
        {"credential": acme.credential.pk, "model": "gpt-4o", "litellm_params": {"rpm": 20}}]}, format="json")
    admin.patch(acme.url(f"routes/{route['id']}/"), {"deployments": [
        {"credential": acme.credential.pk, "model": "gpt-4o"}]}, format="json")
    team = admin.post(acme.url("teams/"), {"name": "short-lived", "max_budget": 5, "soft_budget": 5,
                                           "budget_period": "daily"}, format="json").json()
    admin.delete(acme.url(f"teams/{team['id']}/"))
    admin.delete(acme.url(f"routes/{route['id']}/"))
    admin_backend().push_all()
    admin_backend().drift()
    admin_backend().pull_spend(timezone.now() - dt.timedelta(hours=1))

    assert fake.violations == []
    used = {(c.method, endpoint(c.method, c.path).path) for c in fake.calls}  # type: ignore[union-attr]
    assert set(expected_models()) <= used, set(expected_models()) - used
    assert {("GET", "/model/info"), ("GET", "/key/list"), ("GET", "/team/list"), ("GET", "/team/info"),
            ("GET", "/key/info"), ("GET", "/spend/logs/v2")} <= used
    assert not SyncOutbox.objects.filter(done_at=None).exists()


def test_a_key_issued_through_the_api_is_generated_in_litellm(fake: FakeLiteLLM, acme: Tenant) -> None:
    expires = timezone.now() + dt.timedelta(days=2)
    body = issue(acme, allowed_routes=["chat"], max_budget="25.50", soft_budget="20", budget_period="monthly",
                 rpm_limit=60, tpm_limit=5000, expires_at=expires.isoformat()).json()
    token = sha(body["key"])
    generate = fake.bodies("/key/generate")[-1]
    assert generate["key"] == body["key"]
    assert generate["team_id"] == f"portal-team-{acme.team.pk}" and generate["models"] == ["acme/chat"]
    assert (generate["max_budget"], generate["soft_budget"], generate["budget_duration"]) == (25.5, 20.0, "30d")
    assert (generate["rpm_limit"], generate["tpm_limit"], generate["blocked"], generate["spend"]) == (60, 5000,
                                                                                                   False, 0.0)
    assert 2 * 86400 - 60 < int(generate["duration"][:-1]) <= 2 * 86400
    assert generate["key_alias"] == f"acme/key-{body['id']}.{token[:8]}"
    assert generate["metadata"] == {"portal_key_id": body["id"], "portal_org_id": acme.org.pk,
                                    "portal_team_id": acme.team.pk, "portal_project_id": acme.project.pk,
                                    "portal_key_name": "ci key", "portal_owner": None}
    # After the commit the outbox push addresses the key by its hash only.
    assert fake.bodies("/key/update")[-1]["key"] == token and fake.bodies("/key/unblock")[-1] == {"key": token}
    assert fake.keys[token]["models"] == ["acme/chat"]


def test_keys_without_routes_get_their_teams_models_and_never_an_empty_list(fake: FakeLiteLLM, acme: Tenant) -> None:
    assert fake.keys[sha(acme.key_plaintext)]["models"] == ["acme/chat"]
    team = fake.teams[f"portal-team-{acme.team.pk}"]
    assert team["models"] == ["acme/chat"] and team["team_alias"] == "acme/acme-platform"
    acme.client("admin").post(acme.url("routes/"), {
        "name": "private", "allowed_teams": [], "deployments": [{"model": "m", "litellm_params": {
            "mock_response": "x"}}]}, format="json")
    assert fake.keys[sha(acme.key_plaintext)]["models"] == ["acme/chat", "acme/private"]
    acme.client("admin").patch(acme.url(f"routes/{acme.route.pk}/"), {"is_active": False}, format="json")
    acme.client("admin").patch(acme.url("routes/" + str(acme.org.routes.get(name="private").pk) + "/"),
                               {"is_active": False}, format="json")
    # LiteLLM reads [] as "every model": a team without routes gets a name no route can have.
    assert fake.teams[f"portal-team-{acme.team.pk}"]["models"] == [NO_MODELS]
    assert fake.keys[sha(acme.key_plaintext)]["models"] == [NO_MODELS]
    assert not fake.models


def test_the_plaintext_goes_only_into_the_generate_body(fake: FakeLiteLLM, acme: Tenant,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.outage = 1  # one retry, so retries are covered too
    created = issue(acme).json()
    rotated = acme.client("owner").post(acme.url(f"keys/{created['id']}/rotate/"), {"grace_period_seconds": 60},
                                        format="json").json()
    for plaintext in (created["key"], rotated["key"], acme.key_plaintext):
        carrying = [c for c in fake.calls if plaintext in c.raw]
        assert carrying and all(c.path == "/key/generate" and c.body["key"] == plaintext for c in carrying)
        assert plaintext not in caplog.text
        assert not SyncOutbox.objects.filter(last_error__contains=plaintext[3:]).exists()


def test_rotation_carries_the_spend_over_and_the_old_secret_dies_with_its_grace(fake: FakeLiteLLM,
                                                                                acme: Tenant) -> None:
    old = sha(acme.key_plaintext)
    fake.keys[old]["spend"] = 3.5
    rotated = acme.client("member").post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": 600},
                                         format="json").json()
    new = sha(rotated["key"])
    assert fake.bodies("/key/generate")[-1]["spend"] == 3.5  # rotating never resets a budget
    assert fake.keys[new]["key_alias"] != fake.keys[old]["key_alias"]  # LiteLLM wants aliases unique
    assert old in fake.keys and fake.keys[old]["models"] == fake.keys[new]["models"]
    assert tasks_admin.sync_expire_grace() == 0
    KeyGraceHash.objects.filter(key_hash=old).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert tasks_admin.sync_expire_grace() == 1  # queues a push through the outbox, which deletes it
    assert old not in fake.keys and new in fake.keys
    assert fake.bodies("/key/delete")[-1] == {"keys": [old]}


def test_rotation_without_grace_deletes_the_old_secret_at_once(fake: FakeLiteLLM, acme: Tenant) -> None:
    old = sha(acme.key_plaintext)
    rotated = acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/rotate/"), format="json").json()
    assert old not in fake.keys and sha(rotated["key"]) in fake.keys


def test_block_unblock_and_revoke_through_the_api(fake: FakeLiteLLM, acme: Tenant) -> None:
    token, owner = sha(acme.key_plaintext), acme.client("owner")
    owner.post(acme.url(f"keys/{acme.key.pk}/block/"))
    assert fake.bodies("/key/block")[-1] == {"key": token} and fake.keys[token]["blocked"] is True
    owner.post(acme.url(f"keys/{acme.key.pk}/unblock/"))
    assert fake.bodies("/key/unblock")[-1] == {"key": token} and fake.keys[token]["blocked"] is False
    owner.post(acme.url(f"keys/{acme.key.pk}/revoke/"))
    assert fake.bodies("/key/delete")[-1] == {"keys": [token]} and token not in fake.keys
    before = len(fake.calls)
    admin_backend().push_key(acme.key.pk)  # again: LiteLLM's 404 means done
    assert fake.paths(since=before) == ["/key/delete"]


def test_a_key_is_rolled_back_when_litellm_cannot_take_it(fake: FakeLiteLLM, acme: Tenant) -> None:
    count, tokens, before = VirtualKey.objects.count(), set(fake.keys), len(fake.calls)
    fake.down, fake.retry_after = {"/key/generate"}, "7"
    member = actor_for_user(acme.org, acme.users["member"])
    with pytest.raises(LiteLLMAdminError) as caught:
        keys.key_create(actor=member, data={"name": "k", "team": acme.team, "project": acme.project})
    assert not caught.value.permanent and caught.value.status == 503
    assert str(caught.value) == "POST /key/generate: LiteLLM answered 503: DB unavailable"
    assert fake.paths(since=before).count("/key/generate") == 3 and fake.sleeps == [7.0, 7.0]  # bounded, waits from Retry-After
    assert VirtualKey.objects.count() == count and not SyncOutbox.objects.filter(done_at=None).exists()
    fake.down, fake.outage = set(), 1000  # LiteLLM entirely down
    response = issue(acme)  # the API's error handler decides the status; no key is kept or shown
    assert response.status_code >= 500 and "key" not in response.json()
    assert VirtualKey.objects.count() == count and set(fake.keys) == tokens


def test_a_lost_reply_to_generate_is_not_an_error(fake: FakeLiteLLM, acme: Tenant) -> None:
    fake.lose_reply, before = {"/key/generate"}, len(fake.calls)  # stored, but the reply never came
    response = issue(acme)  # the retry is refused as a duplicate; LiteLLM has the key, so that is success
    assert response.status_code == 201
    assert fake.paths(since=before).count("/key/generate") == 2 and sha(response.json()["key"]) in fake.keys


def test_a_503_keeps_the_outbox_row_and_a_later_drain_pushes_it_once(fake: FakeLiteLLM, acme: Tenant) -> None:
    token = sha(acme.key_plaintext)
    fake.outage = 3  # every attempt of the push right after commit
    assert acme.client("owner").patch(acme.url(f"keys/{acme.key.pk}/"), {"rpm_limit": 5},
                                      format="json").status_code == 200
    row = SyncOutbox.objects.get(done_at=None)
    assert (row.kind, row.object_id, row.attempts) == ("key", acme.key.pk, 1)
    assert row.next_attempt_at > timezone.now() and "503" in row.last_error
    assert fake.keys[token].get("rpm_limit") is None and fake.sleeps == [0.5, 1.0]
    assert sync.drain_outbox() == 0  # not due yet: backing off
    due_now()
    assert sync.drain_outbox() == 1
    assert fake.keys[token]["rpm_limit"] == 5 and not SyncOutbox.objects.filter(done_at=None).exists()
    # Pushing the same state again updates; it never creates twice.
    creations = [p for p in fake.paths() if p in ("/key/generate", "/team/new", "/model/new")]
    for _ in range(2):
        admin_backend().push_all()
    assert [p for p in fake.paths() if p in ("/key/generate", "/team/new", "/model/new")] == creations
    assert "/team/update" in fake.paths()[-10:]
    assert len(fake.keys) == 1 and len(fake.teams) == 1 and len(fake.models) == 1


def test_drift_reports_what_litellm_has_wrong_and_push_all_repairs_it(fake: FakeLiteLLM, acme: Tenant) -> None:
    backend = admin_backend()
    assert backend.drift() == []
    token, team = sha(acme.key_plaintext), f"portal-team-{acme.team.pk}"
    dep = next(iter(fake.models))
    fake.teams[team]["models"] = ["acme/chat", "globex/chat"]
    fake.keys[token]["max_budget"] = 999.0
    fake.models[dep]["model_info"]["portal_fingerprint"] = "edited-by-hand"
    fake.models["portal-dep-999999"] = {"model_name": "acme/old", "litellm_params": {"model": "openai/x"},
                                        "model_info": {"id": "portal-dep-999999", "org": acme.org.pk}}
    fake.teams["portal-team-999999"] = {"team_id": "portal-team-999999", "models": []}
    fake.keys["f" * 64] = {"token": "f" * 64, "key_alias": "acme/key-999999.ffffffff",
                           "metadata": {"portal_key_id": 999999}}
    assert sorted(backend.drift()) == sorted([
        f"stale   team {team} (models)",
        "orphan  team portal-team-999999",
        f"stale   model {dep}",
        "orphan  model portal-dep-999999",
        f"stale   key {acme.key.pk} ({acme.key.key_prefix}...) (max_budget)",
        "orphan  key acme/key-999999.ffffffff",
    ])
    del fake.keys[token]
    assert f"missing key {acme.key.pk} ({acme.key.key_prefix}...)" in backend.drift()
    with pytest.raises(LiteLLMAdminError, match="not in LiteLLM; rotate it"):
        backend.push_key(acme.key.pk)  # a hash cannot be registered: only a rotation can fix it
    acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/rotate/"), format="json")
    backend.push_all()
    assert backend.drift() == []


def test_two_organizations_with_a_route_of_the_same_name_get_two_model_groups(fake: FakeLiteLLM, acme: Tenant,
                                                                              globex: Tenant) -> None:
    admin_backend().push_all()
    assert sorted(m["model_name"] for m in fake.models.values()) == ["acme/chat", "globex/chat"]
    assert len({m["model_info"]["id"] for m in fake.models.values()}) == 2
    assert fake.teams[f"portal-team-{acme.team.pk}"]["models"] == ["acme/chat"]
    assert fake.teams[f"portal-team-{globex.team.pk}"]["models"] == ["globex/chat"]
    assert fake.keys[sha(globex.key_plaintext)]["models"] == ["globex/chat"]
    globex_model = next(m for m in fake.models.values() if m["model_name"] == "globex/chat")
    assert globex_model["litellm_params"]["mock_response"] == "hello from globex"


def test_a_deployment_update_patches_and_a_dropped_parameter_recreates(fake: FakeLiteLLM, acme: Tenant) -> None:
    admin, dep = acme.client("admin"), f"portal-dep-{acme.route.deployments.get().pk}"
    before = len(fake.calls)
    admin_backend().push_routes(acme.org.pk)  # unchanged: no model write at all
    assert not {"/model/new", "/model/delete"} & set(fake.paths(since=before)) and not fake.paths("PATCH")
    admin.patch(acme.url(f"routes/{acme.route.pk}/"), {"timeout_seconds": 9}, format="json")
    assert fake.paths("PATCH") == [f"/model/{dep}/update"] and fake.models[dep]["litellm_params"]["timeout"] == 9
    before = len(fake.calls)
    admin.patch(acme.url(f"routes/{acme.route.pk}/"), {"timeout_seconds": None}, format="json")
    assert "timeout" not in fake.models[dep]["litellm_params"]  # LiteLLM cannot drop one: deleted and re-added
    assert [p for p in fake.paths(since=before) if p.startswith("/model/")] == ["/model/delete", "/model/new"]
