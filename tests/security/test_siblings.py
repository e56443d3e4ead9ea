"""Siblings of issue 8's holes that nobody listed, tried as a hostile tenant
through the real REST API (no proxies: fast).

Each test is an attack that succeeded on the code before its fix."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from gateway.models import UsageDaily, VirtualKey
from gateway.services import keys
from portal import services
from portal.access import system_actor
from portal.models import Project, Team, TeamRole
from tests.factories import Tenant, api

pytestmark = pytest.mark.django_db


def project_url(t: Tenant, path: str, project: Project | None = None) -> str:
    return t.url(f"projects/{(project or t.project).pk}/{path}")


def other_team(t: Tenant) -> tuple[Team, Project, VirtualKey]:
    """A second team of the tenant that the member and the team admin are not in,
    with a project, a key owned by the org admin, and a day of usage on it."""
    system = system_actor(t.org, "tests")
    team = services.team_create(actor=system, data={"name": f"{t.org.slug}-research"})
    services.team_member_add(actor=system, team=team, email=f"admin@{t.org.slug}.test", role=TeamRole.ADMIN)
    project = services.project_create(actor=system, data={"name": f"{t.org.slug}-secret-lab", "team": team})
    key = keys.key_create(actor=system, data={"name": f"{t.org.slug} research key", "team": team,
                                              "project": project, "owner": t.users["admin"]}).key
    UsageDaily.objects.create(organization=t.org, day=timezone.now().date(), key=key, team=team, project=project,
                              owner_email=f"admin@{t.org.slug}.test", route="chat", requests=7,
                              cost=Decimal("3.5"), latency_ms_sum=70)
    return team, project, key


def viewer_token_of(t: Tenant, role: str) -> str:
    """The attacker lowers its own token: a viewer-level token of a member."""
    response = t.client(role).post(t.url("tokens/"), {"name": "lowered", "role": "viewer"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["token"])


# A token's lower role widens what a member sees ----------------------------------------------------


@pytest.mark.parametrize("role", ["member", "team_admin"])
def test_a_members_viewer_token_does_not_see_other_teams_usage(acme: Tenant, role: str) -> None:
    _, project, key = other_team(acme)
    own = acme.client(role).get(acme.url("usage/"), {"group_by": "key"}).json()
    assert own["totals"]["requests"] == 0  # the member itself sees only its teams' usage
    lowered = api(viewer_token_of(acme, role))
    for group_by in ("key", "project", "user", "team", "day"):
        body = lowered.get(acme.url("usage/"), {"group_by": group_by}).json()
        assert body["totals"]["requests"] == 0, (group_by, body)
        assert "research" not in str(body) and "secret-lab" not in str(body), body
    filtered = lowered.get(acme.url("usage/"), {"group_by": "route", "key": key.pk, "project": project.pk}).json()
    assert filtered["totals"]["cost"] == 0, filtered


@pytest.mark.xfail(strict=True, reason="the keys list scopes by the token's role in gateway/services/keys.py "
                                       "(keys_visible_to), helper C's file: see the report")
@pytest.mark.parametrize("role", ["member", "team_admin"])
def test_a_members_viewer_token_does_not_list_other_teams_keys(acme: Tenant, role: str) -> None:
    _, _, key = other_team(acme)
    assert key.pk not in [k["id"] for k in acme.client(role).get(acme.url("keys/")).json()["results"]]
    lowered = api(viewer_token_of(acme, role))
    listed = lowered.get(acme.url("keys/")).json()
    assert "research key" not in str(listed), listed
    assert lowered.get(acme.url(f"keys/{key.pk}/")).status_code == 404


def test_an_org_viewer_still_sees_every_team(acme: Tenant) -> None:
    """The fix narrows members' lowered tokens only: viewers (and admins' viewer tokens) read the whole org."""
    other_team(acme)
    for client in (acme.client("viewer"), api(viewer_token_of(acme, "admin"))):
        body = client.get(acme.url("usage/"), {"group_by": "key"}).json()
        assert body["totals"]["requests"] == 7 and "research key" in str(body), body
