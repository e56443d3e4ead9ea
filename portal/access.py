"""Who is acting, in which organization, with which role.

An `Actor` is built once per request (or per management command) and is what
permission checks, services and the audit log take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied

from portal.models import ROLE_RANK, ApiToken, Membership, Organization, OrgRole, TeamMembership, TeamRole, TokenScope

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class NotAMember(Exception):
    """The user has no role in the organization: callers answer 404."""


def lower_role(a: str, b: str) -> str:
    return a if ROLE_RANK[OrgRole(a)] <= ROLE_RANK[OrgRole(b)] else b


@dataclass
class Actor:
    """A user acting in one organization with an effective role. A token's
    role is capped by its user's current role, so demoting a user demotes
    their tokens at once."""

    organization: Organization
    user: User | None
    role: str
    token: ApiToken | None = None
    scope: str = TokenScope.FULL
    ip_address: str | None = None
    label_override: str | None = None
    #: the user's own role in the organization, whatever the token's (None: a system actor)
    membership_role: str | None = None
    _team_roles: dict[int, str] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        if self.label_override:
            return self.label_override
        who = self.user.email or self.user.username if self.user else "system"
        return f"{who} (token {self.token.name})" if self.token else who

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[OrgRole(self.role)] >= ROLE_RANK[OrgRole(role)]

    def require(self, role: str) -> None:
        if not self.at_least(role):
            raise PermissionDenied(f"This needs the '{role}' role in the organization or higher.")

    def sees_every_team(self) -> bool:
        """Org viewers and up read every team's keys and usage; members only
        their teams'. Roles are not nested here (a viewer sees more than a
        member), so a member's viewer-level token must not widen what the
        member sees: both the effective and the user's own role decide."""
        return OrgRole.MEMBER not in (self.role, self.membership_role)

    def team_roles(self) -> dict[int, str]:
        if self._team_roles is None:
            rows = TeamMembership.objects.filter(team__organization=self.organization, user=self.user)
            self._team_roles = dict(rows.values_list("team_id", "role")) if self.user else {}
        return self._team_roles

    def in_team(self, team_id: int) -> bool:
        return team_id in self.team_roles()

    def manages_team(self, team_id: int) -> bool:
        """Org admins manage every team; team admins manage their own, unless
        acting through a viewer-level token."""
        if self.at_least(OrgRole.ADMIN):
            return True
        return self.at_least(OrgRole.MEMBER) and self.team_roles().get(team_id) == TeamRole.ADMIN

    def require_team_manager(self, team_id: int) -> None:
        if not self.manages_team(team_id):
            raise PermissionDenied("This needs the organization 'admin' role or the team's 'admin' role.")


def actor_for_user(organization: Organization, user: User | AnonymousUser, *, token: ApiToken | None = None,
                   ip_address: str | None = None) -> Actor:
    if not user.is_authenticated:
        raise NotAMember
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None or not user.is_active:
        raise NotAMember
    role = membership.role
    scope: str = TokenScope.FULL
    if token is not None:
        if token.organization_id != organization.pk:
            raise NotAMember
        role = lower_role(token.role, membership.role)
        scope = token.scope
    return Actor(organization=organization, user=user, role=role, token=token, scope=scope, ip_address=ip_address,
                 membership_role=membership.role)


def system_actor(organization: Organization, label: str, user: User | None = None) -> Actor:
    """For management commands and the Django admin: full rights, named in the audit log."""
    return Actor(organization=organization, user=user, role=OrgRole.OWNER, label_override=label)
