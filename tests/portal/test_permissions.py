"""Every endpoint, walked with the owner, admin, team admin, member, viewer
and outsider tokens: outsiders get 404, a too-low role gets 403, and no
list ever shows another tenant's rows."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.models import ModelRoute, ProviderCredential, VirtualKey
from gateway.services import keys
from portal import services
from portal.access import actor_for_user, system_actor
from portal.models import AuditLogEntry, Membership, Project, Team, TeamMembership
from tests.factories import ROLES, Tenant

ORDER = {role: i for i, role in enumerate(reversed(ROLES))}  # viewer 0 ... owner 4


@dataclass
class Case:
    name: str
    method: str
    path: Callable[[Tenant], str]
    lowest: str | None  # the lowest role that succeeds; None: a role-specific rule below
    ok: int = 200
    body: Callable[[Tenant], dict[str, Any]] | None = None


def fresh_team(t: Tenant) -> Team:
    return services.team_create(actor=system_actor(t.org, "t"), data={"name": f"tmp-{Team.objects.count()}"})


def fresh_member(t: Tenant) -> Membership:
    n = Membership.objects.count()
    return services.member_add(actor=system_actor(t.org, "t"), email=f"tmp{n}@{t.org.slug}.test", role="viewer")


def fresh_key(t: Tenant, owner: str = "member") -> VirtualKey:
    actor = actor_for_user(t.org, t.users["team_admin"])
    return keys.key_create(actor=actor, data={"name": "k", "team": t.team, "project": t.project,
                                              "owner": t.users[owner]}).key


def fresh_team_member(t: Tenant) -> TeamMembership:
    m = fresh_member(t)
    services.member_update(actor=system_actor(t.org, "t"), membership=m, role="member")
    return services.team_member_add(actor=system_actor(t.org, "t"), team=t.team, email=m.user.email, role="member")


CASES = [
    Case("org read", "get", lambda t: t.url(), "viewer"),
    Case("org update", "patch", lambda t: t.url(), "admin", body=lambda t: {"name": "Acme Inc"}),
    Case("members list", "get", lambda t: t.url("members/"), "viewer"),
    Case("member add", "post", lambda t: t.url("members/"), "admin", 201,
         lambda t: {"email": f"new{Membership.objects.count()}@x.test", "role": "member"}),
    Case("member update", "patch", lambda t: t.url(f"members/{fresh_member(t).pk}/"), "admin",
         body=lambda t: {"role": "member"}),
    Case("member remove", "delete", lambda t: t.url(f"members/{fresh_member(t).pk}/"), "admin", 204),
    Case("teams list", "get", lambda t: t.url("teams/"), "viewer"),
    Case("team read", "get", lambda t: t.url(f"teams/{t.team.pk}/"), "viewer"),
    Case("team create", "post", lambda t: t.url("teams/"), "admin", 201,
         lambda t: {"name": f"team-{Team.objects.count()}"}),
    Case("team update", "patch", lambda t: t.url(f"teams/{t.team.pk}/"), "admin", body=lambda t: {"max_budget": 5}),
    Case("team delete", "delete", lambda t: t.url(f"teams/{fresh_team(t).pk}/"), "admin", 204),
    Case("team members list", "get", lambda t: t.url(f"teams/{t.team.pk}/members/"), "viewer"),
    Case("team member add", "post", lambda t: t.url(f"teams/{t.team.pk}/members/"), "team_admin", 201,
         lambda t: {"email": fresh_member(t).user.email, "role": "member"}),
    Case("team member update", "patch",
         lambda t: t.url(f"teams/{t.team.pk}/members/{fresh_team_member(t).pk}/"), "team_admin",
         body=lambda t: {"role": "admin"}),
    Case("team member remove", "delete",
         lambda t: t.url(f"teams/{t.team.pk}/members/{fresh_team_member(t).pk}/"), "team_admin", 204),
    Case("projects list", "get", lambda t: t.url("projects/"), "viewer"),
    Case("project create", "post", lambda t: t.url("projects/"), "team_admin", 201,
         lambda t: {"name": f"p-{Project.objects.count()}", "team": t.team.pk}),
    Case("project update", "patch", lambda t: t.url(f"projects/{t.project.pk}/"), "team_admin",
         body=lambda t: {"description": "x"}),
    Case("credentials list", "get", lambda t: t.url("credentials/"), "admin"),
    Case("credential read", "get", lambda t: t.url(f"credentials/{t.credential.pk}/"), "admin"),
    Case("credential create", "post", lambda t: t.url("credentials/"), "admin", 201,
         lambda t: {"name": f"c-{ProviderCredential.objects.count()}", "provider": "anthropic",
                    "secrets": {"api_key": "sk-ant-x"}}),
    Case("credential update", "patch", lambda t: t.url(f"credentials/{t.credential.pk}/"), "admin",
         body=lambda t: {"settings": {"api_base": "https://example.test/v1"}}),
    Case("routes list", "get", lambda t: t.url("routes/"), "viewer"),
    Case("route read", "get", lambda t: t.url(f"routes/{t.route.pk}/"), "viewer"),
    Case("route create", "post", lambda t: t.url("routes/"), "admin", 201,
         lambda t: {"name": f"r{ModelRoute.objects.count()}",
                    "deployments": [{"model": "m", "litellm_params": {"mock_response": "hi"}}]}),
    Case("route update", "patch", lambda t: t.url(f"routes/{t.route.pk}/"), "admin",
         body=lambda t: {"num_retries": 2}),
    Case("keys list", "get", lambda t: t.url("keys/"), "viewer"),
    Case("key create", "post", lambda t: t.url("keys/"), None, 201,
         lambda t: {"name": "new", "team": t.team.pk, "project": t.project.pk}),
    Case("key update (own)", "patch", lambda t: t.url(f"keys/{fresh_key(t).pk}/"), None,
         body=lambda t: {"name": "renamed"}),
    Case("key rotate (own)", "post", lambda t: t.url(f"keys/{fresh_key(t).pk}/rotate/"), None, body=lambda t: {}),
    Case("key revoke (own)", "post", lambda t: t.url(f"keys/{fresh_key(t).pk}/revoke/"), None),
    Case("key block", "post", lambda t: t.url(f"keys/{fresh_key(t).pk}/block/"), "team_admin"),
    Case("key unblock", "post", lambda t: t.url(f"keys/{fresh_key(t).pk}/unblock/"), "team_admin"),
    Case("key of another owner update", "patch", lambda t: t.url(f"keys/{fresh_key(t, 'admin').pk}/"),
         "team_admin", body=lambda t: {"name": "x"}),
    Case("tokens list", "get", lambda t: t.url("tokens/"), "viewer"),
    Case("token create", "post", lambda t: t.url("tokens/"), "viewer", 201,
         lambda t: {"name": "ci", "role": "viewer"}),
    Case("audit log", "get", lambda t: t.url("audit-log/"), "admin"),
]

# Members may write their own keys in their teams, but not block or unblock them.
OWN_KEY_RULE = {"owner": True, "admin": True, "team_admin": True, "member": True, "viewer": False}


def expected(case: Case, role: str) -> int:
    allowed = OWN_KEY_RULE[role] if case.lowest is None else ORDER[role] >= ORDER[case.lowest]
    return case.ok if allowed else 403


def call(t: Tenant, client: Any, case: Case) -> Any:
    path = case.path(t)
    body = case.body(t) if case.body else None
    return getattr(client, case.method)(path, body, format="json") if body is not None else \
        getattr(client, case.method)(path)


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_role_gets_what_its_role_allows(acme: Tenant, case: Case) -> None:
    for role in ROLES:
        response = call(acme, acme.client(role), case)
        assert response.status_code == expected(case, role), (role, response.status_code, response.content[:300])


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_outsiders_get_404_everywhere(acme: Tenant, globex: Tenant, case: Case) -> None:
    """globex's owner, with full rights in globex, cannot see that acme's objects exist."""
    before = AuditLogEntry.objects.filter(organization=acme.org).count()
    response = call(acme, globex.client("owner"), case)
    assert response.status_code == 404, response.content[:300]
    assert response.json() == {"detail": "Not found."}
    # fresh_* helpers write through the system actor; nothing was written on the outsider's behalf
    assert not AuditLogEntry.objects.filter(organization=acme.org, actor=globex.users["owner"]).exists()
    assert AuditLogEntry.objects.filter(organization=acme.org).count() >= before


OBJECT_PATHS = [
    ("teams", lambda t: t.team.pk), ("projects", lambda t: t.project.pk), ("credentials", lambda t: t.credential.pk),
    ("routes", lambda t: t.route.pk), ("keys", lambda t: t.key.pk),
]


@pytest.mark.django_db
@pytest.mark.parametrize("resource,ident", OBJECT_PATHS, ids=[p[0] for p in OBJECT_PATHS])
def test_another_tenants_object_is_404_under_ones_own_org(acme: Tenant, globex: Tenant, resource: str,
                                                           ident: Callable[[Tenant], int]) -> None:
    owner = acme.client("owner")
    url = acme.url(f"{resource}/{ident(globex)}/")
    assert owner.get(url).status_code == 404
    assert owner.patch(url, {"name": "stolen"}, format="json").status_code == 404
    assert owner.delete(url).status_code in (404, 405)
    if resource == "keys":
        for verb in ("rotate", "revoke", "block", "unblock"):
            assert owner.post(f"{url}{verb}/", {}, format="json").status_code == 404
        globex.key.refresh_from_db()
        assert globex.key.status == "active"


LISTS = ["members/", "teams/", "projects/", "credentials/", "routes/", "keys/", "tokens/", "audit-log/",
         "teams/{team}/members/"]


@pytest.mark.django_db
def test_no_list_shows_another_tenants_rows(acme: Tenant, globex: Tenant) -> None:
    # Make both tenants' rows interleave, so a missing filter would show.
    for t in (acme, globex, acme):
        fresh_key(t)
    foreign_markers = {"globex", str(globex.org.pk)}
    for role, path in itertools.product(ROLES, LISTS):
        response = acme.client(role).get(acme.url(path.format(team=acme.team.pk)), {"page_size": 500})
        if response.status_code == 403:
            continue
        assert response.status_code == 200, (role, path)
        body = response.json()
        assert body["count"] == len(body["results"]) > 0 or path == "audit-log/", (role, path)
        text = response.content.decode()
        assert not any(marker in text for marker in ("@globex.test", "hello from globex", "sk-globex")), (role, path)
        assert foreign_markers.isdisjoint({row.get("organization") for row in body["results"]})
        assert "globex" not in {row.get("model_group", "").split("/")[0] for row in body["results"]}


@pytest.mark.django_db
def test_lists_do_not_leak_even_when_filtering_by_a_foreign_id(acme: Tenant, globex: Tenant) -> None:
    owner = acme.client("owner")
    for params in ({"team": globex.team.pk}, {"project": globex.project.pk}, {"owner": "member@globex.test"}):
        response = owner.get(acme.url("keys/"), params)
        assert response.status_code == 200 and response.json()["count"] == 0


@pytest.mark.django_db
def test_filtering_by_another_tenants_id_looks_like_filtering_by_no_id(acme: Tenant, globex: Tenant) -> None:
    owner = acme.client("owner")
    for path, field, foreign in (("projects/", "team", globex.team.pk), ("keys/", "team", globex.team.pk),
                                 ("keys/", "project", globex.project.pk)):
        theirs = owner.get(acme.url(path), {field: foreign})
        nobodys = owner.get(acme.url(path), {field: 10**9})
        assert theirs.status_code == nobodys.status_code == 200, path
        assert theirs.json()["count"] == nobodys.json()["count"] == 0


@pytest.mark.django_db
def test_members_see_only_their_teams_keys(acme: Tenant) -> None:
    other_team = fresh_team(acme)
    other_project = services.project_create(actor=system_actor(acme.org, "t"),
                                            data={"name": "other", "team": other_team})
    admin = actor_for_user(acme.org, acme.users["admin"])
    hidden = keys.key_create(actor=admin, data={"name": "hidden", "team": other_team, "project": other_project}).key
    seen_by_member = {k["id"] for k in acme.client("member").get(acme.url("keys/")).json()["results"]}
    seen_by_viewer = {k["id"] for k in acme.client("viewer").get(acme.url("keys/")).json()["results"]}
    assert acme.key.pk in seen_by_member and hidden.pk not in seen_by_member
    assert hidden.pk in seen_by_viewer
    assert acme.client("member").get(acme.url(f"keys/{hidden.pk}/")).status_code == 404


@pytest.mark.django_db
def test_unauthenticated_and_bad_tokens_get_401(acme: Tenant) -> None:
    from tests.factories import api

    assert api().get(acme.url("keys/")).status_code == 401
    assert api("lpt_not-a-real-token").get(acme.url("keys/")).status_code == 401
    response = api("garbage").get(acme.url("keys/"))
    assert response.status_code == 401 and "Bearer lpt_" in response.json()["detail"]
