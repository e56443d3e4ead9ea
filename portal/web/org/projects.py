"""Projects: list, create, edit, delete, and the project's Langfuse connection (host, public key and a
write-only secret key, checked against the host before it is kept: `evals.services.langfuse`, the
service the API's `projects/{id}/langfuse/` uses).

Reading: every member. Writing: org admins, and a team's admins for the team's projects (the
services check `Actor.manages_team`; the pages offer the forms only to those)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from evals.api.serializers import LangfuseConnectionSerializer
from evals.models import Benchmark, Dataset, EvalRun, EvalSchedule, Evaluator, LangfuseConnection, LangfuseOrgKey
from evals.services import langfuse
from gateway.models import VirtualKey
from portal import services
from portal.access import Actor
from portal.api.serializers import ProjectSerializer
from portal.models import OrgRole, Project, Team
from portal.web.base import PROJECT, OrgPage
from portal.web.org import forms

EDIT_FIELDS = (
    forms.Field("name", "Name", required=True, maxlength=100),
    forms.Field("description", "Description", kind="textarea", maxlength=500),
    *forms.budget_fields(),
)
LANGFUSE_FIELDS = (
    forms.Field("host", "Langfuse host", kind="url", required=True, maxlength=300,
                help="The address of your Langfuse, e.g. https://cloud.langfuse.com"),
    forms.Field("public_key", "Public key", required=True, maxlength=200),
    forms.Field("secret_key", "Secret key", kind="password", maxlength=300,
                help="Write-only: never shown again. Leave empty to keep the stored one (same host only)."),
)

#: the secret of a new connection: required, and the same write-only field
NEW_SECRET = replace(LANGFUSE_FIELDS[2], required=True, help="Write-only: checked with Langfuse, then never shown again.")


def managed_teams(actor: Actor) -> list[Team]:
    """The teams whose projects the actor may create: every team to org admins, the teams they
    are admin of to the others."""
    teams = Team.objects.visible_to(actor, "view")
    return [t for t in teams if actor.manages_team(t.pk)]


def create_fields(teams: list[Team]) -> tuple[forms.Field, ...]:
    return (
        EDIT_FIELDS[0],
        forms.Field("team", "Team", kind="select", required=True, choices=tuple((str(t.pk), t.name) for t in teams),
                    help="Its admins manage the project; a project does not move to another team."),
        *EDIT_FIELDS[1:],
    )


def _serializer(page: OrgPage, data: dict[str, Any], project: Project | None = None) -> ProjectSerializer:
    return ProjectSerializer(project, data=data, partial=project is not None,
                             context={"organization": page.organization, "actor": page.actor})


class ProjectsPage(OrgPage):
    """Every project; the create form for those who manage a team."""

    write_role = OrgRole.MEMBER  # then the team check in the service decides, as in the API

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(values={"budget_period": "none"}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        fields = create_fields(managed_teams(self.actor))
        data = forms.parse(fields, request.POST)
        serializer = _serializer(self, data)
        if not serializer.is_valid():
            return self.listing(values=data, errors=forms.Outcome.of(serializer.errors, fields).errors)
        try:
            project = services.project_create(actor=self.actor, data=dict(serializer.validated_data))
        except ValidationError as exc:
            return self.listing(values=data, errors=forms.Outcome.of(exc, fields).errors)
        messages.success(request, f"Project '{project.name}' created.")
        return redirect("web:project-settings", org_slug=self.organization.slug, project_id=project.pk)

    def listing(self, *, values: dict[str, Any], errors: dict[str, Any]) -> HttpResponse:
        teams = managed_teams(self.actor)
        projects = Project.objects.visible_to(self.actor, "view").select_related("team", "langfuse_connection")
        return self.page("web/org/projects.html", http_status=400 if errors else 200, projects=projects,
                         errors=errors, can_create=bool(teams),
                         fields=forms.bind(create_fields(teams), values=values, errors=errors, form="project"))


class ProjectSettingsPage(OrgPage):
    """One project: its settings and budget, its Langfuse connection, and the way to delete it."""

    write_role = OrgRole.MEMBER
    parents = (PROJECT,)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return project_settings(self, values=forms.values_of(self.parent(Project), EDIT_FIELDS), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        self.actor.require_team_manager(project.team_id)
        data = forms.parse(EDIT_FIELDS, request.POST)
        serializer = _serializer(self, data, project)
        errors: dict[str, Any] = {}
        if not serializer.is_valid():
            errors = forms.Outcome.of(serializer.errors, EDIT_FIELDS).errors
        else:
            try:
                services.project_update(actor=self.actor, project=project, data=dict(serializer.validated_data))
            except ValidationError as exc:
                errors = forms.Outcome.of(exc, EDIT_FIELDS).errors
        if errors:
            return project_settings(self, values=data, errors=errors)
        messages.success(request, f"Project '{data.get('name') or project.name}' saved.")
        return redirect("web:project-settings", org_slug=self.organization.slug, project_id=project.pk)


def project_settings(page: OrgPage, *, values: dict[str, Any], errors: dict[str, Any],
                     langfuse_values: dict[str, Any] | None = None,
                     langfuse_errors: dict[str, Any] | None = None) -> HttpResponse:
    project, actor = page.parent(Project), page.actor
    connection = LangfuseConnection.objects.visible_to(actor, "view").filter(project=project).first()
    if langfuse_values is None:
        langfuse_values = forms.values_of(connection, LANGFUSE_FIELDS) if connection else {}
    lf_fields = LANGFUSE_FIELDS if connection else (*LANGFUSE_FIELDS[:2], NEW_SECRET)
    status = 400 if errors or langfuse_errors else 200
    can_provision = connection is None and LangfuseOrgKey.objects.visible_to(actor, "view").exists()  # admins
    return page.page("web/org/project_settings.html", http_status=status, project=project, connection=connection,
                     can_provision=can_provision,
                     manages=actor.manages_team(project.team_id), errors=errors,
                     langfuse_errors=langfuse_errors or {},
                     fields=forms.bind(EDIT_FIELDS, values=values, errors=errors, form="project"),
                     langfuse_fields=forms.bind(lf_fields, values=langfuse_values, errors=langfuse_errors,
                                                form="langfuse"))


class ProjectLangfusePage(OrgPage):
    """POST: connect the project to its Langfuse project (or change the connection): checked first."""

    write_role = OrgRole.MEMBER
    parents = (PROJECT,)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        self.actor.require_team_manager(project.team_id)
        existing = LangfuseConnection.objects.visible_to(self.actor, "change").filter(project=project).first()
        data = forms.parse(LANGFUSE_FIELDS, request.POST)
        if not data.get("secret_key"):
            data.pop("secret_key", None)  # keep the stored one (the service allows it on the same host only)
        serializer = LangfuseConnectionSerializer(existing, data=data)
        errors: dict[str, Any] = {}
        if not serializer.is_valid():
            errors = forms.Outcome.of(serializer.errors, LANGFUSE_FIELDS).errors
        else:
            valid = serializer.validated_data
            try:
                langfuse.connection_save(actor=self.actor, project=project, host=valid["host"],
                                         public_key=valid["public_key"], secret_key=valid.get("secret_key"),
                                         enabled=existing.enabled if existing else True)
            except ValidationError as exc:
                errors = forms.Outcome.of(exc, LANGFUSE_FIELDS).errors
        if errors:
            return project_settings(self, values=forms.values_of(project, EDIT_FIELDS), errors={},
                                    langfuse_values=data, langfuse_errors=errors)
        messages.success(request, f"Project '{project.name}' is connected to Langfuse (the keys were checked).")
        return redirect("web:project-settings", org_slug=self.organization.slug, project_id=project.pk)


class ProjectLangfuseProvision(OrgPage):
    """POST: create the project's Langfuse project and keys with the organization key, and connect them."""

    write_role = OrgRole.MEMBER
    parents = (PROJECT,)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        try:
            connection = langfuse.provision(actor=self.actor, project=project)
        except ValidationError as exc:
            messages.error(request, f"Project '{project.name}': {forms.messages_of(exc)}")
        else:
            messages.success(request, f"Created the Langfuse project '{connection.langfuse_project_name}' and "
                                      f"connected '{project.name}' to it.")
        return redirect("web:project-settings", org_slug=self.organization.slug, project_id=project.pk)


class ProjectLangfuseDisconnect(OrgPage):
    """POST: forget the project's Langfuse connection (traces stop going there; evaluations stop)."""

    write_role = OrgRole.MEMBER
    parents = (PROJECT,)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        connection = LangfuseConnection.objects.visible_to(self.actor, "delete").filter(project=project).first()
        if connection is not None:
            langfuse.connection_delete(actor=self.actor, connection=connection)
            messages.success(request, f"Project '{project.name}' is no longer connected to Langfuse.")
        return redirect("web:project-settings", org_slug=self.organization.slug, project_id=project.pk)


def evaluation_counts(actor: Actor, project: Project) -> list[tuple[str, int]]:
    """The project's evaluation objects that go with it (the database deletes them with the project)."""
    kinds = (("evaluator", Evaluator), ("schedule", EvalSchedule), ("evaluation run", EvalRun),
             ("dataset", Dataset), ("benchmark", Benchmark))
    counts = [(name, model.objects.visible_to(actor, "view").filter(project=project).count()) for name, model in kinds]
    return [(name, n) for name, n in counts if n]


class ProjectDeletePage(OrgPage):
    """GET: what deleting the project does (or why not yet); POST: delete."""

    write_role = OrgRole.MEMBER
    parents = (PROJECT,)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        self.actor.require_team_manager(project.team_id)
        keys = VirtualKey.objects.visible_to(self.actor, "view").filter(project=project)
        return self.page("web/org/project_delete.html", project=project,
                         live_keys=keys.exclude(status="revoked").count(), revoked_keys=keys.filter(
                             status="revoked").count(),
                         connection=LangfuseConnection.objects.visible_to(self.actor, "view").filter(
                             project=project).first(), evaluation=evaluation_counts(self.actor, project))

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        try:
            services.project_delete(actor=self.actor, project=project)
        except ValidationError as exc:
            messages.error(request, f"Project '{project.name}': {forms.messages_of(exc)}")
            return redirect("web:project-delete", org_slug=self.organization.slug, project_id=project.pk)
        messages.success(request, f"Project '{project.name}' deleted.")
        return redirect("web:projects", org_slug=self.organization.slug)
