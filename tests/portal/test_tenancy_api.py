"""Organizations, members, teams, projects and the audit log through the API."""

from __future__ import annotations

import pytest

from portal import services
from portal.access import actor_for_user
from portal.models import AuditLogEntry, Membership, Team
from tests.factories import Tenant, api


@pytest.mark.django_db
def test_team_and_project_lifecycle_is_audited(acme: Tenant) -> None:
    owner = acme.client("owner")
    team = owner.post(acme.url("teams/"), {"name": "research", "max_budget": 100, "soft_budget": 80,
                                           "budget_period": "monthly"}, format="json").json()
    assert team["max_budget"] == 100 and team["budget_period"] == "monthly"
    project = owner.post(acme.url("projects/"), {"name": "evals", "team": team["id"]}, format="json").json()
    assert owner.delete(acme.url(f"teams/{team['id']}/")).status_code == 400  # still has a project
    assert owner.delete(acme.url(f"projects/{project['id']}/")).status_code == 204
    assert owner.delete(acme.url(f"teams/{team['id']}/")).status_code == 204
    actions = list(AuditLogEntry.objects.filter(organization=acme.org, actor=acme.users["owner"])
                   .exclude(action__startswith="api_token").order_by("id").values_list("action", flat=True))
    assert actions == ["team.create", "project.create", "project.delete", "team.delete"]
    log = owner.get(acme.url("audit-log/"), {"action": "team.create"}).json()["results"][0]
    assert log["actor_label"] == "owner@acme.test (token bootstrap)"
    assert log["after"]["max_budget"] == "100.0000" and log["before"] is None


@pytest.mark.django_db
def test_budget_validation_on_org_team_project(acme: Tenant) -> None:
    owner = acme.client("owner")
    for path in ("", f"teams/{acme.team.pk}/", f"projects/{acme.project.pk}/"):
        response = owner.patch(acme.url(path), {"max_budget": 10, "soft_budget": 20}, format="json")
        assert response.status_code == 400 and "soft_budget" in response.json(), path
        response = owner.patch(acme.url(path), {"max_budget": -3}, format="json")
        assert response.status_code == 400 and "max_budget" in response.json(), path
    assert owner.patch(acme.url(), {"max_budget": 1000, "budget_period": "monthly"}, format="json").json()[
        "max_budget"] == 1000


@pytest.mark.django_db
def test_duplicate_names_and_foreign_teams_are_400(acme: Tenant, globex: Tenant) -> None:
    owner = acme.client("owner")
    assert owner.post(acme.url("teams/"), {"name": acme.team.name}, format="json").json() == {
        "name": ["A team with this name already exists."]}
    response = owner.post(acme.url("projects/"), {"name": "p", "team": globex.team.pk}, format="json")
    assert response.status_code == 400 and "team" in response.json()
    assert Team.objects.filter(organization=acme.org).count() == 1


@pytest.mark.django_db
def test_owner_rules(acme: Tenant) -> None:
    owner, admin = acme.client("owner"), acme.client("admin")
    members = {m["email"]: m["id"] for m in owner.get(acme.url("members/")).json()["results"]}
    # an admin cannot make owners, nor touch an owner
    assert admin.post(acme.url("members/"), {"email": "x@acme.test", "role": "owner"},
                      format="json").status_code == 403
    assert admin.patch(acme.url(f"members/{members['owner@acme.test']}/"), {"role": "viewer"},
                       format="json").status_code == 403
    # nobody changes their own membership (no accidental lock-out)
    assert owner.patch(acme.url(f"members/{members['owner@acme.test']}/"), {"role": "admin"},
                       format="json").status_code == 403
    # an owner can make another owner; that user's old admin token stays an admin token...
    owner.patch(acme.url(f"members/{members['admin@acme.test']}/"), {"role": "owner"}, format="json")
    assert admin.patch(acme.url(f"members/{members['owner@acme.test']}/"), {"role": "admin"},
                       format="json").status_code == 403
    # ...but with an owner token the new owner can demote the first
    new_owner = actor_for_user(acme.org, acme.users["admin"])
    _, token = services.api_token_create(actor=new_owner, name="owner", role="owner")
    assert api(token).patch(acme.url(f"members/{members['owner@acme.test']}/"), {"role": "admin"},
                            format="json").status_code == 200
    assert Membership.objects.filter(organization=acme.org, role="owner").count() == 1


@pytest.mark.django_db
def test_removing_a_member_removes_team_roles_and_revokes_tokens(acme: Tenant) -> None:
    owner = acme.client("owner")
    member_id = next(m["id"] for m in owner.get(acme.url("members/")).json()["results"]
                     if m["email"] == "team_admin@acme.test")
    assert owner.delete(acme.url(f"members/{member_id}/")).status_code == 204
    assert acme.client("team_admin").get(acme.url("keys/")).status_code == 401
    emails = [m["email"] for m in owner.get(acme.url(f"teams/{acme.team.pk}/members/")).json()["results"]]
    assert "team_admin@acme.test" not in emails


@pytest.mark.django_db
def test_team_member_must_belong_to_the_org(acme: Tenant, globex: Tenant) -> None:
    response = acme.client("owner").post(acme.url(f"teams/{acme.team.pk}/members/"),
                                         {"email": "member@globex.test"}, format="json")
    assert response.status_code == 400 and "email" in response.json()
