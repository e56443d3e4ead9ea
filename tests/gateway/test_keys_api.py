"""Issuing, editing, rotating, blocking and revoking keys through the REST API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from gateway.models import KeyGraceHash, VirtualKey
from portal.models import AuditLogEntry
from tests.factories import Tenant, api


def issue(t: Tenant, role: str = "owner", **body: Any) -> Any:
    payload = {"name": "ci key", "team": t.team.pk, "project": t.project.pk} | body
    return t.client(role).post(t.url("keys/"), payload, format="json")


@pytest.mark.django_db
def test_issue_returns_the_key_once_with_a_ready_cline_setup(acme: Tenant, settings: Any) -> None:
    settings.GATEWAY_PUBLIC_URL = "https://llm.acme.test"
    response = issue(acme, allowed_routes=["chat"], max_budget="25.50", budget_period="monthly", rpm_limit=60)
    assert response.status_code == 201, response.content
    body = response.json()
    plaintext = body["key"]
    assert plaintext.startswith("sk-") and len(plaintext) > 40
    assert body["key_prefix"] == plaintext[:11]
    assert body["allowed_routes"] == ["chat"] and body["max_budget"] == 25.5 and body["rpm_limit"] == 60
    cline = body["cline"]
    assert cline["base_url"] == "https://llm.acme.test/v1"
    assert cline["vscode"] == {"API Provider": "LiteLLM", "Base URL": "https://llm.acme.test/v1",
                               "API Key": plaintext, "Model": "chat"}
    settings_json = cline["cli_providers_json"]
    assert settings_json["version"] == 1 and settings_json["lastUsedProvider"] == "litellm"
    litellm = settings_json["providers"]["litellm"]
    assert litellm["settings"] == {"provider": "litellm", "apiKey": plaintext, "model": "chat",
                                   "baseUrl": "https://llm.acme.test/v1"}
    assert dt.datetime.fromisoformat(litellm["updatedAt"].replace("Z", "+00:00"))
    # Stored: the hash, never the plaintext; reading the key back never shows it.
    key = VirtualKey.objects.get(pk=body["id"])
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    again = acme.client("owner").get(acme.url(f"keys/{key.pk}/")).json()
    assert "key" not in again and plaintext not in json.dumps(again)


@pytest.mark.django_db
def test_member_issues_own_key_and_cannot_issue_for_others(acme: Tenant) -> None:
    response = issue(acme, "member")
    assert response.status_code == 201 and response.json()["owner"] == "member@acme.test"
    response = issue(acme, "member", owner="admin@acme.test")
    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("body,field", [
    ({"max_budget": -1}, "max_budget"),
    ({"max_budget": "ten dollars"}, "max_budget"),
    ({"max_budget": "NaN"}, "max_budget"),
    ({"max_budget": "1e400"}, "max_budget"),
    ({"soft_budget": 10, "max_budget": 5}, "soft_budget"),
    ({"rpm_limit": -5}, "rpm_limit"),
    ({"tpm_limit": "many"}, "tpm_limit"),
    ({"rpm_limit": 10**12}, "rpm_limit"),
    ({"budget_period": "hourly"}, "budget_period"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"expires_at": "tomorrow"}, "expires_at"),
    ({"allowed_routes": ["no-such-route"]}, "allowed_routes"),
    ({"allowed_routes": "chat"}, "allowed_routes"),
    ({"name": "x" * 101}, "name"),
    ({"name": ""}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"team": 10**15}, "team"),
    ({"project": "abc"}, "project"),
    ({"owner": "nobody@nowhere.test"}, "owner"),
    ({"metadata": ["not", "a", "dict"]}, "metadata"),
])
def test_bad_input_gets_400_with_field_errors_and_writes_nothing(acme: Tenant, body: dict[str, Any],
                                                                field: str) -> None:
    keys_before, audit_before = VirtualKey.objects.count(), AuditLogEntry.objects.count()
    response = issue(acme, **body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert (VirtualKey.objects.count(), AuditLogEntry.objects.count()) == (keys_before, audit_before)


@pytest.mark.django_db
def test_objects_of_another_organization_are_unknown(acme: Tenant, globex: Tenant) -> None:
    for body, field in (({"team": globex.team.pk}, "team"), ({"project": globex.project.pk}, "project"),
                        ({"owner": "member@globex.test"}, "owner")):
        response = issue(acme, **body)
        assert response.status_code == 400 and field in response.json()
    # globex also has a route called "chat": acme's key gets acme's route, never globex's
    response = issue(acme, allowed_routes=["chat"])
    key = VirtualKey.objects.get(pk=response.json()["id"])
    assert list(key.allowed_routes.values_list("organization__slug", flat=True)) == ["acme"]


@pytest.mark.django_db
def test_project_of_another_team_is_refused(acme: Tenant) -> None:
    other = acme.client("owner").post(acme.url("teams/"), {"name": "other"}, format="json").json()
    response = issue(acme, team=other["id"])
    assert response.status_code == 400 and response.json() == {"project": ["The project belongs to another team."]}


@pytest.mark.django_db
def test_route_not_open_to_the_team_is_refused(acme: Tenant) -> None:
    other = acme.client("owner").post(acme.url("teams/"), {"name": "other"}, format="json").json()
    acme.client("owner").patch(acme.url(f"routes/{acme.route.pk}/"), {"allowed_teams": [other["id"]]}, format="json")
    response = issue(acme, allowed_routes=["chat"])
    assert response.status_code == 400
    assert response.json() == {"allowed_routes": ["Route 'chat' is not available to this team."]}


@pytest.mark.django_db
def test_malformed_and_oversized_bodies(acme: Tenant) -> None:
    client = acme.client("owner")
    response = client.post(acme.url("keys/"), "{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]
    response = client.post(acme.url("keys/"), json.dumps({"name": "x" * 2_000_000}), content_type="application/json")
    assert response.status_code in (400, 413)
    response = client.post(acme.url("keys/"), "[]", content_type="application/json")
    assert response.status_code == 400
    response = client.post(acme.url("keys/"), "name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


@pytest.mark.django_db
def test_rotate_gives_a_new_secret_and_keeps_the_old_for_the_grace_period(acme: Tenant) -> None:
    client = acme.client("owner")
    old_hash = acme.key.key_hash
    response = client.post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": 600}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == acme.key.pk and body["key"] != acme.key_plaintext
    assert body["cline"]["api_key"] == body["key"]
    acme.key.refresh_from_db()
    assert acme.key.key_hash == hashlib.sha256(body["key"].encode()).hexdigest()
    grace = KeyGraceHash.objects.get(key=acme.key, key_hash=old_hash)
    assert 590 <= (grace.expires_at - timezone.now()).total_seconds() <= 600
    bad = client.post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": -1}, format="json")
    assert bad.status_code == 400 and "grace_period_seconds" in bad.json()


@pytest.mark.django_db
def test_block_unblock_revoke_and_revocation_is_final(acme: Tenant) -> None:
    client = acme.client("owner")
    url = acme.url(f"keys/{acme.key.pk}/")
    assert client.post(url + "block/").json()["status"] == "blocked"
    assert client.post(url + "unblock/").json()["status"] == "active"
    revoked = client.post(url + "revoke/").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    for verb in ("unblock", "block", "rotate"):
        response = client.post(url + f"{verb}/", {}, format="json")
        assert response.status_code == 409 and "revoked" in response.json()["detail"]
    assert client.patch(url, {"name": "x"}, format="json").status_code == 409
    actions = list(AuditLogEntry.objects.filter(target_type="virtualkey", target_id=str(acme.key.pk))
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["key.create", "key.block", "key.unblock", "key.revoke"]


@pytest.mark.django_db
def test_update_key_limits_and_routes(acme: Tenant) -> None:
    client = acme.client("team_admin")
    url = acme.url(f"keys/{acme.key.pk}/")
    response = client.patch(url, {"rpm_limit": 5, "allowed_routes": ["chat"], "max_budget": 3}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["rpm_limit"] == 5 and response.json()["allowed_routes"] == ["chat"]
    assert client.patch(url, {"team": 999}, format="json").json()["team"] == acme.team.pk  # read-only, ignored
    assert client.patch(url, {"expires_at": "2000-01-01T00:00:00Z"}, format="json").status_code == 400


@pytest.mark.django_db
def test_list_filters_and_pagination(acme: Tenant) -> None:
    client = acme.client("owner")
    for i in range(5):
        issue(acme, name=f"batch {i}")
    client.post(acme.url(f"keys/{acme.key.pk}/revoke/"))
    page = client.get(acme.url("keys/"), {"page_size": 2}).json()
    assert page["count"] == 6 and len(page["results"]) == 2 and page["next"]
    assert client.get(acme.url("keys/"), {"status": "revoked"}).json()["count"] == 1
    assert client.get(acme.url("keys/"), {"search": "batch"}).json()["count"] == 5
    assert client.get(acme.url("keys/"), {"owner": "member@acme.test"}).json()["count"] == 1
    assert client.get(acme.url("keys/"), {"status": "nope"}).status_code == 400
    assert client.get(acme.url("keys/"), {"team": "x"}).status_code == 400
    names = [k["name"] for k in client.get(acme.url("keys/"), {"ordering": "name"}).json()["results"]]
    assert names == sorted(names)


@pytest.mark.django_db
def test_idempotency_key_returns_the_same_record_for_a_retry(acme: Tenant) -> None:
    client = acme.client("owner")
    body = {"name": "provisioned", "team": acme.team.pk, "project": acme.project.pk}
    first = client.post(acme.url("keys/"), body, format="json", HTTP_IDEMPOTENCY_KEY="onboard-42")
    second = client.post(acme.url("keys/"), body, format="json", HTTP_IDEMPOTENCY_KEY="onboard-42")
    assert first.status_code == 201 and second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"] and "key" not in second.json()
    assert VirtualKey.objects.filter(name="provisioned").count() == 1
    other = client.post(acme.url("keys/"), body | {"name": "else"}, format="json", HTTP_IDEMPOTENCY_KEY="onboard-42")
    assert other.status_code == 409
    # another principal's identical Idempotency-Key is its own
    third = acme.client("admin").post(acme.url("keys/"), body, format="json", HTTP_IDEMPOTENCY_KEY="onboard-42")
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]


@pytest.mark.django_db(transaction=True)
def test_idempotency_key_holds_under_concurrent_retries(acme: Tenant) -> None:
    body = {"name": "raced", "team": acme.team.pk, "project": acme.project.pk}
    token = acme.tokens["owner"]
    results: list[Any] = []

    def post() -> None:
        try:
            results.append(api(token).post(acme.url("keys/"), body, format="json", HTTP_IDEMPOTENCY_KEY="race-1"))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.status_code for r in results).count(201) == 1
    assert {r.json()["id"] for r in results if r.status_code in (200, 201)} == {
        VirtualKey.objects.get(name="raced").pk}


@pytest.mark.django_db
def test_key_scoped_token_may_only_manage_keys(acme: Tenant) -> None:
    created = acme.client("owner").post(acme.url("tokens/"), {"name": "provisioner", "role": "admin",
                                                              "scope": "keys"}, format="json")
    assert created.status_code == 201
    provisioner = api(created.json()["token"])
    assert provisioner.post(acme.url("keys/"), {"name": "p", "team": acme.team.pk,
                                                "project": acme.project.pk}, format="json").status_code == 201
    assert provisioner.post(acme.url(f"keys/{acme.key.pk}/rotate/"), {}, format="json").status_code == 200
    assert provisioner.post(acme.url(f"keys/{acme.key.pk}/revoke/")).status_code == 200
    assert provisioner.get(acme.url("routes/")).status_code == 200
    assert provisioner.get(acme.url("teams/")).status_code == 200
    assert provisioner.post(acme.url("teams/"), {"name": "nope"}, format="json").status_code == 403
    assert provisioner.get(acme.url("credentials/")).status_code == 403
    assert provisioner.get(acme.url("audit-log/")).status_code == 403
    assert provisioner.post(acme.url("tokens/"), {"name": "x", "role": "viewer"}, format="json").status_code == 403


@pytest.mark.django_db
def test_token_role_is_capped_by_the_users_role(acme: Tenant) -> None:
    member = acme.client("member")
    response = member.post(acme.url("tokens/"), {"name": "escalate", "role": "owner"}, format="json")
    assert response.status_code == 400 and "role" in response.json()
    # an admin token stops being an admin token when its user is demoted
    admin_token = acme.tokens["admin"]
    assert api(admin_token).get(acme.url("audit-log/")).status_code == 200
    membership_id = next(m["id"] for m in acme.client("owner").get(acme.url("members/")).json()["results"]
                         if m["email"] == "admin@acme.test")
    acme.client("owner").patch(acme.url(f"members/{membership_id}/"), {"role": "viewer"}, format="json")
    assert api(admin_token).get(acme.url("audit-log/")).status_code == 403
    acme.client("owner").delete(acme.url(f"members/{membership_id}/"))
    assert api(admin_token).get(acme.url("keys/")).status_code == 401


@pytest.mark.django_db
def test_revoked_and_expired_tokens_stop_working(acme: Tenant) -> None:
    created = acme.client("viewer").post(acme.url("tokens/"), {"name": "short", "role": "viewer"}, format="json")
    token_id, token = created.json()["id"], created.json()["token"]
    assert api(token).get(acme.url("keys/")).status_code == 200
    assert acme.client("viewer").delete(acme.url(f"tokens/{token_id}/")).status_code == 204
    assert api(token).get(acme.url("keys/")).status_code == 401
    expiring = acme.client("viewer").post(acme.url("tokens/"), {"name": "e", "role": "viewer"}, format="json").json()
    from portal.models import ApiToken

    ApiToken.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = api(expiring["token"]).get(acme.url("keys/"))
    assert response.status_code == 401 and "expired" in response.json()["detail"]
