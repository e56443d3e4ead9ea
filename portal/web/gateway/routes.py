"""Model routes: the list (everyone), create, edit and delete (org admins) with deployments, fallbacks,
retries and allowed teams, through the routes serializer and `gateway/services/routes.py`; and
"test this route" (`route_test.py`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from gateway.api.serializers import RouteSerializer
from gateway.models import ModelRoute, ProviderCredential
from gateway.services import routes as route_services
from portal.api.errors import validation_detail
from portal.models import OrgRole, Project, Team
from portal.tenancy import Parent
from portal.web.base import OrgPage
from portal.web.gateway import route_test
from portal.web.gateway.forms import first_errors, flatten, json_object, object_id, one_of

ROUTE = Parent(ModelRoute, "route_id")
MAX_DEPLOYMENTS = 50
MAX_FALLBACKS = 5
BLANK_ROWS = 2  # empty deployment rows the form offers below the route's own


@dataclass
class DeploymentRow:
    """One deployment row of the form, as typed (or as stored), with its errors."""

    credential: str = ""
    model: str = ""
    weight: str = "1"
    priority: str = ""
    mock_response: str = ""
    params: str = ""  # the other LiteLLM parameters, as JSON
    errors: list[str] = field(default_factory=list)

    @property
    def blank(self) -> bool:
        return not (self.credential or self.model.strip() or self.mock_response or self.params.strip()
                    or self.priority.strip())


def rows_from_post(post: Any) -> list[DeploymentRow]:
    count = min(object_id(post.get("deployment_rows", "")) or 0, MAX_DEPLOYMENTS + BLANK_ROWS)
    return [DeploymentRow(**{f: post.get(f"dep-{i}-{f}", "") for f in
                             ("credential", "model", "weight", "priority", "mock_response", "params")})
            for i in range(count)]


def rows_from_route(route: ModelRoute | None) -> list[DeploymentRow]:
    rows = []
    for d in route.deployments.all() if route is not None else []:
        params = dict(d.litellm_params)
        mock = params.pop("mock_response", "")
        rows.append(DeploymentRow(credential=str(d.credential_id or ""), model=d.model, weight=str(d.weight),
                                  priority="" if d.priority is None else str(d.priority), mock_response=str(mock),
                                  params=json.dumps(params) if params else ""))
    return rows


def deployments_data(rows: list[DeploymentRow]) -> tuple[list[dict[str, Any]], list[int]]:
    """The serializer's deployments from the rows that are not blank, and which row each came from.
    A row whose parameters are not a JSON object gets the error (ValueError)."""
    out, origin = [], []
    for i, row in enumerate(rows):
        if row.blank:
            continue
        try:
            params = json_object(row.params, "other parameters")
        except ValueError as exc:
            row.errors.append(str(exc))
            params = {}
        if row.mock_response:
            params["mock_response"] = row.mock_response
        out.append({"credential": row.credential or None, "model": row.model.strip(), "weight": row.weight or 1,
                    "priority": row.priority.strip() or None, "litellm_params": params})
        origin.append(i)
    return out, origin


def route_form_data(post: Any, rows: list[DeploymentRow]) -> tuple[dict[str, Any], list[int]]:
    deployments, origin = deployments_data(rows)
    data: dict[str, Any] = {
        "name": post.get("name", "").strip(), "description": post.get("description", ""),
        "is_active": post.get("is_active") == "on", "num_retries": post.get("num_retries") or 0,
        "timeout_seconds": post.get("timeout_seconds") or None,
        "input_cost_per_million": post.get("input_cost_per_million") or None,
        "output_cost_per_million": post.get("output_cost_per_million") or None,
        "allowed_teams": post.getlist("allowed_teams"),
        "fallbacks": [n for n in post.getlist("fallbacks") if n][:MAX_FALLBACKS], "deployments": deployments,
    }
    return data, origin


def place_deployment_errors(errors: dict[str, Any], rows: list[DeploymentRow], origin: list[int]) -> list[str]:
    """The deployments' errors onto their rows (the serializer's per item, the service's "[n] ..."),
    and the ones that belong to no row."""
    left = []
    raw = errors.get("deployments", [])
    items = raw if isinstance(raw, list) else [raw]
    for position, item in enumerate(items):
        if isinstance(item, dict) and position < len(origin):
            rows[origin[position]].errors.extend(flatten(item))
            continue
        for message in flatten(item):
            index = message[1:message.find("]")] if message.startswith("[") and "]" in message else ""
            if index.isdigit() and int(index) < len(origin):
                rows[origin[int(index)]].errors.append(message[message.find("]") + 1:].strip())
            elif message != "{}":
                left.append(message)
    return left


class RoutesPage(OrgPage):
    """The organization's routes, their deployments and fallbacks."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        routes = ModelRoute.objects.visible_to(self.actor, "view").prefetch_related(
            "deployments__credential", "fallback_links__fallback", "allowed_teams")
        return self.page("web/gateway/routes.html", routes=routes, may_write=self.actor.at_least(OrgRole.ADMIN))


class RouteForm(OrgPage):
    """Create a route (no id in the URL), or edit one (`RouteEdit`)."""

    read_role = OrgRole.ADMIN

    @property
    def route(self) -> ModelRoute | None:
        return self.parent(ModelRoute) if "route_id" in self.kwargs else None

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.form(rows=rows_from_route(self.route), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        route, rows = self.route, rows_from_post(request.POST)
        data, origin = route_form_data(request.POST, rows)
        context = {"organization": self.organization, "actor": self.actor}
        serializer = RouteSerializer(route, data=data, context=context)
        valid = serializer.is_valid()
        if not valid or any(row.errors for row in rows):
            return self.form(rows=rows, errors=dict(serializer.errors) if not valid else {}, origin=origin,
                             failed=True)
        try:
            if route is None:
                saved = route_services.route_create(actor=self.actor, data=serializer.validated_data)
            else:
                saved = route_services.route_update(actor=self.actor, route=route, data=serializer.validated_data)
        except ValidationError as exc:
            return self.form(rows=rows, errors=validation_detail(exc), origin=origin, failed=True)
        messages.success(request, f"Route '{saved.name}' {'saved' if route else 'created'}.")
        return redirect("web:route", org_slug=self.organization.slug, route_id=saved.pk)

    def form(self, *, rows: list[DeploymentRow], errors: dict[str, Any], origin: list[int] | None = None,
             failed: bool = False, test: route_test.RouteTestResult | None = None) -> HttpResponse:
        route, actor, post = self.route, self.actor, self.request.POST if failed else None
        deployment_errors = place_deployment_errors(errors, rows, origin or [])
        field_errors = first_errors({k: v for k, v in errors.items() if k != "deployments"})
        rows = rows + [DeploymentRow() for _ in range(BLANK_ROWS)] if len(rows) < MAX_DEPLOYMENTS else rows
        if route is not None and not failed:
            values = {f: getattr(route, f) for f in ("name", "description", "is_active", "num_retries",
                                                     "timeout_seconds", "input_cost_per_million",
                                                     "output_cost_per_million")}
            teams = {t.pk for t in route.allowed_teams.all()}
            fallbacks = [link.fallback.name for link in route.fallback_links.select_related("fallback")]
        elif post is not None:
            values = {f: post.get(f, "") for f in ("name", "description", "num_retries", "timeout_seconds",
                                                   "input_cost_per_million", "output_cost_per_million")}
            values["is_active"] = post.get("is_active") == "on"
            teams = {pk for pk in map(object_id, post.getlist("allowed_teams")) if pk is not None}
            fallbacks = [n for n in post.getlist("fallbacks") if n]
        else:
            values, teams, fallbacks = {"is_active": True, "num_retries": 0}, set(), []
        others = ModelRoute.objects.visible_to(actor, "view")
        if route is not None:
            others = others.exclude(pk=route.pk)
        fallback_slots = [fallbacks[i] if i < len(fallbacks) else "" for i in range(max(3, len(fallbacks) + 1))]
        return self.page(
            "web/gateway/route_form.html", http_status=400 if failed else 200, route=route, values=values,
            errors=field_errors, deployment_errors=deployment_errors, rows=rows,
            credentials=ProviderCredential.objects.visible_to(actor, "view"),
            teams=Team.objects.visible_to(actor, "view"), chosen_teams=teams, other_routes=others,
            fallback_slots=fallback_slots[:MAX_FALLBACKS], test=test, test_projects=self.test_projects(),
            default_prompt=route_test.DEFAULT_PROMPT, max_prompt=route_test.MAX_PROMPT,
            prompt=self.request.POST.get("prompt", route_test.DEFAULT_PROMPT) if test else route_test.DEFAULT_PROMPT)

    def test_projects(self) -> list[Project]:
        """The projects whose team may use the route (the test key is issued in one of them)."""
        route = self.route
        if route is None:
            return []
        projects = Project.objects.visible_to(self.actor, "view").select_related("team").order_by("team__name", "name")
        allowed = [t.pk for t in route.allowed_teams.all()]
        return list(projects.filter(team__in=allowed) if allowed else projects)


class RouteEdit(RouteForm):
    """The form of the route the URL names (loaded through `visible_to`), its test and its deletion."""

    parents = (ROUTE,)


class RouteTest(RouteEdit):
    """POST: one call through the gateway with a short-lived key (`route_test.py`), then the route's page
    with the answer, latency and cost, or the error."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return redirect("web:route", org_slug=self.organization.slug, route_id=self.parent(ModelRoute).pk)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        route = self.parent(ModelRoute)
        projects = Project.objects.visible_to(self.actor, "view").filter(
            pk__in=[p.pk for p in self.test_projects()]).select_related("team")
        project = one_of(projects, request.POST.get("project"))
        prompt = request.POST.get("prompt", "").strip() or route_test.DEFAULT_PROMPT
        if project is None or len(prompt) > route_test.MAX_PROMPT:
            result = route_test.RouteTestResult(route=route.name, project="", error=(
                "Choose a project whose team may use this route." if project is None else
                f"The prompt may have at most {route_test.MAX_PROMPT} characters."))
        else:
            result = route_test.route_test(actor=self.actor, route=route, project=project,  # type: ignore[arg-type]
                                           prompt=prompt)
        return self.form(rows=rows_from_route(route), errors={}, test=result)


class RouteDelete(OrgPage):
    """Delete a route (POST); refused while keys may use it by name."""

    parents = (Parent(ModelRoute, "route_id", action="delete"),)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        route = self.parent(ModelRoute)
        try:
            route_services.route_delete(actor=self.actor, route=route)
        except ValidationError as exc:
            messages.error(request, "; ".join(m for ms in validation_detail(exc).values() for m in ms))
            return redirect("web:route", org_slug=self.organization.slug, route_id=route.pk)
        messages.success(request, f"Route '{route.name}' deleted.")
        return redirect("web:routes", org_slug=self.organization.slug)
