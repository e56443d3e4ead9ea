"""The organization's members: list, invite (A's `portal.accounts.invitation_create`: the membership,
optionally a team, and an e-mail with a set-password link), change a role, remove with the
consequences stated before confirming; pending invitations can be sent again or revoked.

Reading: every member. Writing: org admins (owner roles: owners), as in the API; the services refuse
the rest (one's own membership, the last owner)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from gateway.models import VirtualKey
from portal import accounts, services
from portal.access import Actor
from portal.api.serializers import MemberSerializer, MemberUpdateSerializer
from portal.models import ApiToken, Invitation, Membership, OrgRole, Team, TeamMembership, TeamRole
from portal.tenancy import Parent
from portal.web.base import OrgPage
from portal.web.org import forms


def grantable_roles(actor: Actor) -> tuple[tuple[str, str], ...]:
    """The roles the actor may give: only an owner gives (or takes away) the owner role."""
    return tuple((v, t) for v, t in OrgRole.choices if v != OrgRole.OWNER or actor.at_least(OrgRole.OWNER))


def invite_fields(actor: Actor, teams: list[Team]) -> tuple[forms.Field, ...]:
    return (
        forms.Field("email", "E-mail", kind="email", required=True, maxlength=254),
        forms.Field("role", "Role", kind="select", required=True, choices=grantable_roles(actor)),
        forms.Field("team", "Team", kind="select", choices=(("", "no team"), *((str(t.pk), t.name) for t in teams))),
        forms.Field("team_role", "Team role", kind="select", choices=tuple(TeamRole.choices)),
    )


def _team_of(actor: Actor, value: str) -> Team | None:
    """The team an id names among those the actor sees; ValidationError for anything else."""
    if not value:
        return None
    team = None
    if value.isascii() and value.isdigit() and len(value) < 10:
        team = Team.objects.visible_to(actor, "view").filter(pk=int(value)).first()
    if team is None:
        raise ValidationError({"team": "Choose a team of this organization."})
    return team


class MembersPage(OrgPage):
    """Every member with their role; the invite form and the row actions for admins."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(values={"role": OrgRole.MEMBER, "team_role": TeamRole.MEMBER}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        fields = invite_fields(self.actor, self.teams())
        data = forms.parse(fields, request.POST)
        serializer = MemberSerializer(data={"email": data.get("email", ""), "role": data.get("role", "")})
        if not serializer.is_valid():
            return self.listing(values=data, errors=forms.Outcome.of(serializer.errors, fields).errors)
        try:
            team = _team_of(self.actor, data.get("team") or "")
            invitation = accounts.invitation_create(
                actor=self.actor, email=serializer.validated_data["user"]["email"],
                role=serializer.validated_data["role"], team=team,
                team_role=(data.get("team_role") or TeamRole.MEMBER) if team else None)
        except ValidationError as exc:
            return self.listing(values=data, errors=forms.Outcome.of(exc, fields).errors)
        messages.success(request, f"Invited {invitation.email}: an e-mail with a link to set a password is on its way.")
        return redirect("web:members", org_slug=self.organization.slug)

    def manages(self, membership: Membership) -> bool:
        """Whether the row's role and removal controls show: the services' rules, so the page offers
        nothing they would refuse (one's own membership; an owner's, unless one is an owner)."""
        actor = self.actor
        if not actor.at_least(OrgRole.ADMIN) or membership.user_id == getattr(actor.user, "pk", None):
            return False
        return membership.role != OrgRole.OWNER or actor.at_least(OrgRole.OWNER)

    def teams(self) -> list[Team]:
        return list(Team.objects.visible_to(self.actor, "view"))

    def listing(self, *, values: dict[str, Any], errors: dict[str, Any]) -> HttpResponse:
        actor = self.actor
        members = Membership.objects.visible_to(actor, "view").select_related("user").order_by("user__email", "id")
        page = Paginator(members, 100).get_page(self.request.GET.get("page"))
        pending = {}
        if actor.at_least(OrgRole.ADMIN):
            open_invitations = Invitation.objects.visible_to(actor, "view").filter(
                accepted_at=None, revoked_at=None, user_id__in=[m.user_id for m in page])
            for invitation in open_invitations.order_by("created_at"):
                pending[invitation.user_id] = invitation  # the newest wins
        teams: dict[int, list[TeamMembership]] = {}
        in_teams = TeamMembership.objects.visible_to(actor, "view").filter(user_id__in=[m.user_id for m in page])
        for tm in in_teams.select_related("team").order_by("team__name"):
            teams.setdefault(tm.user_id, []).append(tm)
        rows = [(m, pending.get(m.user_id), self.manages(m), teams.get(m.user_id, [])) for m in page]
        return self.page("web/org/members.html", http_status=400 if errors else 200, page=page, rows=rows,
                         errors=errors, roles=grantable_roles(actor), can_write=actor.at_least(OrgRole.ADMIN),
                         fields=forms.bind(invite_fields(actor, self.teams()), values=values, errors=errors,
                                           form="invite"))


class MemberPage(OrgPage):
    """POST: change one member's role."""

    parents = (Parent(Membership, "membership_id", action="change", select_related=("user",)),)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        membership = self.parent(Membership)
        serializer = MemberUpdateSerializer(data={"role": request.POST.get("role", "")})
        try:
            if not serializer.is_valid():
                raise ValidationError({"role": "Choose one of the organization's roles."})
            services.member_update(actor=self.actor, membership=membership, role=serializer.validated_data["role"])
        except ValidationError as exc:
            messages.error(request, f"{membership.user.email}: {forms.messages_of(exc)}")
        else:
            messages.success(request, f"{membership.user.email} is now {serializer.validated_data['role']}.")
        return redirect("web:members", org_slug=self.organization.slug)


def removal_consequences(actor: Actor, membership: Membership) -> dict[str, Any]:
    """What removing the member does, as the confirmation page states it (what `member_remove` does)."""
    user = membership.user
    keys = VirtualKey.objects.visible_to(actor, "view").filter(owner=user).exclude(status="revoked")
    return {
        "keys": keys.count(),
        "teams": list(TeamMembership.objects.visible_to(actor, "view").filter(user=user)
                      .select_related("team").order_by("team__name")),
        "tokens": ApiToken.objects.visible_to(actor, "view").filter(user=user, revoked_at=None).count(),
    }


class MemberRemovePage(OrgPage):
    """GET: what removing the member does; POST: remove."""

    read_role = OrgRole.ADMIN
    parents = (Parent(Membership, "membership_id", action="delete", select_related=("user",)),)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        membership = self.parent(Membership)
        return self.page("web/org/member_remove.html", membership=membership,
                         **removal_consequences(self.actor, membership))

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        membership = self.parent(Membership)
        try:
            services.member_remove(actor=self.actor, membership=membership)
        except ValidationError as exc:
            messages.error(request, f"{membership.user.email}: {forms.messages_of(exc)}")
        else:
            messages.success(request, f"Removed {membership.user.email} from the organization.")
        return redirect("web:members", org_slug=self.organization.slug)


class InvitationAction(OrgPage):
    """POST: send a pending invitation again (a new link) or revoke it."""

    parents = (Parent(Invitation, "invitation_id", action="change"),)

    def post(self, request: HttpRequest, *, verb: str, **kwargs: Any) -> HttpResponse:
        invitation = self.parent(Invitation)
        change = {"resend": accounts.invitation_resend, "revoke": accounts.invitation_revoke}.get(verb)
        if change is None:
            raise Http404
        try:
            change(actor=self.actor, invitation=invitation)
        except ValidationError as exc:
            messages.error(request, f"{invitation.email}: {forms.messages_of(exc)}")
        else:
            messages.success(request, f"Invitation of {invitation.email}: "
                                      + ("sent again with a new link." if verb == "resend" else "revoked."))
        return redirect("web:members", org_slug=self.organization.slug)
