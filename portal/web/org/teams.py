"""Teams: list, create, edit (name, description, budgets), delete (after a confirmation that says what
goes with it), and a team's members with their team roles.

Reading: every member. Teams themselves: org admins. A team's members: org admins and the team's
admins (`Actor.manages_team`, which the services check again)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from gateway.models import ModelRoute, VirtualKey
from portal import services
from portal.api.serializers import TeamMemberSerializer, TeamMemberUpdateSerializer, TeamSerializer
from portal.models import Membership, OrgRole, Project, Team, TeamMembership, TeamRole
from portal.tenancy import Parent
from portal.web.base import OrgPage
from portal.web.org import forms

TEAM_FIELDS = (
    forms.Field("name", "Name", required=True, maxlength=100),
    forms.Field("description", "Description", kind="textarea", maxlength=500),
    *forms.budget_fields(),
)
TEAM = Parent(Team, "team_id")


def _save_team(page: OrgPage, data: dict[str, Any], team: Team | None = None) -> Team | dict[str, list[str]]:
    """The team created or updated through the serializer and the service, or the errors by field."""
    serializer = TeamSerializer(team, data=data, partial=team is not None,
                                context={"organization": page.organization, "actor": page.actor})
    if not serializer.is_valid():
        return forms.Outcome.of(serializer.errors, TEAM_FIELDS).errors
    try:
        if team is None:
            return services.team_create(actor=page.actor, data=dict(serializer.validated_data))
        return services.team_update(actor=page.actor, team=team, data=dict(serializer.validated_data))
    except ValidationError as exc:
        return forms.Outcome.of(exc, TEAM_FIELDS).errors


class TeamsPage(OrgPage):
    """Every team with its members and projects counted; the create form for org admins."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(values={}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        data = forms.parse(TEAM_FIELDS, request.POST)
        saved = _save_team(self, data)
        if isinstance(saved, dict):
            return self.listing(values=data, errors=saved)
        messages.success(request, f"Team '{saved.name}' created.")
        return redirect("web:team", org_slug=self.organization.slug, team_id=saved.pk)

    def listing(self, *, values: dict[str, Any], errors: dict[str, Any]) -> HttpResponse:
        teams = Team.objects.visible_to(self.actor, "view").annotate(
            n_members=Count("memberships", distinct=True), n_projects=Count("projects", distinct=True))
        return self.page("web/org/teams.html", http_status=400 if errors else 200, teams=teams, errors=errors,
                         can_write=self.actor.at_least(OrgRole.ADMIN),
                         fields=forms.bind(TEAM_FIELDS, values=values or {"budget_period": "none"}, errors=errors,
                                           form="team"))


class TeamPage(OrgPage):
    """One team: its settings (org admins) and its members (org admins and the team's admins)."""

    parents = (TEAM,)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.detail(values=forms.values_of(self.parent(Team), TEAM_FIELDS), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team = self.parent(Team)
        data = forms.parse(TEAM_FIELDS, request.POST)
        saved = _save_team(self, data, team)
        if isinstance(saved, dict):
            return self.detail(values=data, errors=saved)
        messages.success(request, f"Team '{saved.name}' saved.")
        return redirect("web:team", org_slug=self.organization.slug, team_id=team.pk)

    def detail(self, *, values: dict[str, Any], errors: dict[str, Any], member_values: dict[str, Any] | None = None,
               member_errors: dict[str, Any] | None = None) -> HttpResponse:
        return team_detail(self, values=values, errors=errors, member_values=member_values or {},
                           member_errors=member_errors or {})


def member_fields(page: OrgPage, team: Team) -> tuple[forms.Field, ...]:
    """The add-a-member form: the organization's members who are not in the team yet."""
    in_team = TeamMembership.objects.visible_to(page.actor, "view").filter(team=team).values("user_id")
    candidates = (Membership.objects.visible_to(page.actor, "view").exclude(user_id__in=in_team)
                  .select_related("user").order_by("user__email"))
    return (
        forms.Field("email", "Member", kind="select", required=True,
                    choices=tuple((m.user.email, m.user.email) for m in candidates),
                    help="People join the organization first (Members: invite)."),
        forms.Field("role", "Team role", kind="select", required=True, choices=tuple(TeamRole.choices)),
    )


def team_detail(page: OrgPage, *, values: dict[str, Any], errors: dict[str, Any], member_values: dict[str, Any],
                member_errors: dict[str, Any]) -> HttpResponse:
    team, actor = page.parent(Team), page.actor
    members = TeamMembership.objects.visible_to(actor, "view").filter(team=team).select_related("user").order_by(
        "user__email")
    projects = Project.objects.visible_to(actor, "view").filter(team=team)
    manages = actor.manages_team(team.pk)
    status = 400 if errors or member_errors else 200
    return page.page("web/org/team.html", http_status=status, team=team, members=members, projects=projects,
                     can_edit=actor.at_least(OrgRole.ADMIN), manages=manages, errors=errors,
                     member_errors=member_errors, team_roles=TeamRole.choices,
                     fields=forms.bind(TEAM_FIELDS, values=values, errors=errors, form="team"),
                     member_fields=forms.bind(member_fields(page, team), values=member_values or
                                              {"role": TeamRole.MEMBER}, errors=member_errors, form="member"))


class TeamDeletePage(OrgPage):
    """GET: what deleting the team does (or why it cannot be deleted yet); POST: delete."""

    read_role = OrgRole.ADMIN
    parents = (Parent(Team, "team_id", action="delete"),)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team = self.parent(Team)
        return self.page("web/org/team_delete.html", team=team,
                         projects=Project.objects.visible_to(self.actor, "view").filter(team=team),
                         members=TeamMembership.objects.visible_to(self.actor, "view").filter(team=team).count(),
                         routes=ModelRoute.objects.visible_to(self.actor, "view").filter(allowed_teams=team))

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team = self.parent(Team)
        try:
            services.team_delete(actor=self.actor, team=team)
        except ValidationError as exc:
            messages.error(request, f"Team '{team.name}': {forms.messages_of(exc)}")
            return redirect("web:team-delete", org_slug=self.organization.slug, team_id=team.pk)
        messages.success(request, f"Team '{team.name}' deleted.")
        return redirect("web:teams", org_slug=self.organization.slug)


class TeamMembersPage(OrgPage):
    """POST: add a member of the organization to the team."""

    write_role = OrgRole.MEMBER  # then the team check in the service decides, as in the API
    parents = (TEAM,)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team = self.parent(Team)
        self.actor.require_team_manager(team.pk)
        fields = member_fields(self, team)
        data = forms.parse(fields, request.POST)
        serializer = TeamMemberSerializer(data={"email": data.get("email", ""), "role": data.get("role", "")})
        errors: dict[str, Any] = {}
        if not serializer.is_valid():
            errors = forms.Outcome.of(serializer.errors, fields).errors
        else:
            try:
                services.team_member_add(actor=self.actor, team=team, email=serializer.validated_data["user"]["email"],
                                         role=serializer.validated_data["role"])
            except ValidationError as exc:
                errors = forms.Outcome.of(exc, fields).errors
        if errors:
            return team_detail(self, values=forms.values_of(team, TEAM_FIELDS), errors={}, member_values=data,
                               member_errors=errors)
        messages.success(request, f"Added {serializer.validated_data['user']['email']} to '{team.name}'.")
        return redirect("web:team", org_slug=self.organization.slug, team_id=team.pk)


TEAM_MEMBER = (TEAM, Parent(TeamMembership, "team_membership_id", within="team", select_related=("user",),
                            action="change"))


class TeamMemberPage(OrgPage):
    """POST: change a team member's team role."""

    write_role = OrgRole.MEMBER
    parents = TEAM_MEMBER

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team, tm = self.parent(Team), self.parent(TeamMembership)
        serializer = TeamMemberUpdateSerializer(data={"role": request.POST.get("role", "")})
        if not serializer.is_valid():
            messages.error(request, f"{tm.user.email}: choose one of the team roles.")
        else:
            services.team_member_update(actor=self.actor, membership=tm, role=serializer.validated_data["role"])
            messages.success(request, f"{tm.user.email} is now {tm.get_role_display().lower()} of '{team.name}'.")
        return redirect("web:team", org_slug=self.organization.slug, team_id=team.pk)


class TeamMemberRemovePage(OrgPage):
    """GET: what taking the person out of the team does; POST: do it."""

    write_role = OrgRole.MEMBER
    parents = TEAM_MEMBER

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team, tm = self.parent(Team), self.parent(TeamMembership)
        self.actor.require_team_manager(team.pk)
        keys = VirtualKey.objects.visible_to(self.actor, "view").filter(owner=tm.user, team=team).exclude(
            status="revoked").count()
        return self.page("web/org/team_member_remove.html", team=team, tm=tm, keys=keys)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        team, tm = self.parent(Team), self.parent(TeamMembership)
        services.team_member_remove(actor=self.actor, membership=tm)
        messages.success(request, f"Took {tm.user.email} out of '{team.name}'.")
        return redirect("web:team", org_slug=self.organization.slug, team_id=team.pk)
