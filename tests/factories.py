"""Test data built through the same services users go through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from gateway.models import ModelRoute, ProviderCredential, VirtualKey
from gateway.services import credentials, keys, routes
from portal import services
from portal.access import system_actor
from portal.models import Membership, Organization, OrgRole, Project, Team, TeamRole, TokenScope

User = get_user_model()
ROLES = ("owner", "admin", "team_admin", "member", "viewer")


def api(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@dataclass
class Tenant:
    """An organization with one user (and one API token) per role, a team, a
    project, a credential, a mock route and a key owned by the member."""

    org: Organization
    team: Team
    project: Project
    credential: ProviderCredential
    route: ModelRoute
    key: VirtualKey
    key_plaintext: str
    users: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str) -> APIClient:
        return api(self.tokens[role])

    def url(self, path: str = "") -> str:
        return f"/api/v1/orgs/{self.org.slug}/{path}"


def make_tenant(slug: str, *, provider_secret: str = "sk-provider-secret-value") -> Tenant:
    org, owner_token = services.bootstrap_organization(slug=slug, owner_email=f"owner@{slug}.test")
    system = system_actor(org, "tests")
    users = {"owner": Membership.objects.get(organization=org, role=OrgRole.OWNER).user}
    tokens = {"owner": owner_token}
    for role, org_role in (("admin", OrgRole.ADMIN), ("team_admin", OrgRole.MEMBER), ("member", OrgRole.MEMBER),
                           ("viewer", OrgRole.VIEWER)):
        users[role] = services.member_add(actor=system, email=f"{role}@{slug}.test", role=org_role).user
    team = services.team_create(actor=system, data={"name": "platform"})
    services.team_member_add(actor=system, team=team, email=f"team_admin@{slug}.test", role=TeamRole.ADMIN)
    services.team_member_add(actor=system, team=team, email=f"member@{slug}.test", role=TeamRole.MEMBER)
    project = services.project_create(actor=system, data={"name": "assistant", "team": team})
    for role in ROLES[1:]:
        actor = _actor(org, users[role])
        _, tokens[role] = services.api_token_create(actor=actor, name=f"{role} token", role=actor.role,
                                                    scope=TokenScope.FULL)
    cred = credentials.credential_create(actor=system, name="openai-main", provider="openai",
                                         secrets={"api_key": provider_secret})
    route = routes.route_create(actor=system, data={
        "name": "chat", "deployments": [{"credential": None, "model": "gpt-4o-mini",
                                         "litellm_params": {"mock_response": f"hello from {slug}"}}]})
    issued = keys.key_create(actor=_actor(org, users["member"]),
                             data={"name": "member key", "team": team, "project": project})
    return Tenant(org, team, project, cred, route, issued.key, issued.plaintext, users, tokens)


def _actor(org: Organization, user: Any) -> Any:
    from portal.access import actor_for_user

    return actor_for_user(org, user)
