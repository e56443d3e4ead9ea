"""The web UI for organization members. Every page under `/orgs/{org_slug}/` is an
`OrgPage` (portal/web/base.py): the same tenancy rules as the API, from the same
mixin; tenant rows are read only through `visible_to`, and every write goes
through the same serializers (for validation) and services."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from evals.models import Benchmark, EvalReport, EvalRun, EvalSchedule, EvalScore, Evaluator, LangfuseConnection
from gateway import selectors
from gateway.api.serializers import KeySerializer
from gateway.models import ModelRoute, VirtualKey
from gateway.services import keys as key_services
from gateway.services.keys import IssuedKey
from portal.access import Actor
from portal.api.errors import validation_detail
from portal.exceptions import Conflict
from portal.models import AuditLogEntry, Membership, OrgRole, Project, Team
from portal.tenancy import Parent
from portal.web import charts
from portal.web.base import OrgPage


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "web/error.html", {"title": "Not found", "message": "There is nothing here."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return render(request, "web/error.html", {"title": "Something went wrong",
                                              "message": "The error was logged."}, status=500)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user  # login_required: never anonymous here
    membership = (Membership.objects.filter(user_id=user.pk or 0).select_related("organization")
                  .order_by("id").first())
    if membership is None:
        return render(request, "web/error.html", {"title": "No organization",
                                                  "message": "You are not a member of any organization yet."})
    return redirect("web:org", org_slug=membership.organization.slug)


class OrgOverview(OrgPage):
    """The organization at a glance: spend and requests per day, top routes and teams."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor = self.actor
        series = selectors.daily_series(actor, days=30)
        today = timezone.now().date()
        window = {"from": today - dt.timedelta(days=29), "to": today}
        by_route = selectors.usage_report(actor, {"group_by": "route", **window})
        by_team = selectors.usage_report(actor, {"group_by": "team", **window})
        return self.page(
            "web/org.html",
            teams=Team.objects.visible_to(actor, "view").prefetch_related("projects"),
            routes=ModelRoute.objects.visible_to(actor, "view").prefetch_related("deployments"),
            key_count=VirtualKey.objects.visible_to(actor, "view").count(),
            member_count=Membership.objects.visible_to(actor, "view").count(),
            spend_chart=charts.bar_chart([(d, r["cost"]) for d, r in series], unit="$", title="Spend per day"),
            requests_chart=charts.bar_chart([(d, r["requests"]) for d, r in series], title="Requests per day",
                                            color="#067647"),
            totals=by_route["totals"], by_route=by_route["results"][:8], by_team=by_team["results"][:8],
        )


def _key_form_data(post: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": post.get("name", ""), "team": post.get("team") or None,
                            "project": post.get("project") or None,
                            "allowed_routes": post.getlist("allowed_routes"),
                            "budget_period": post.get("budget_period") or "none"}
    for field in ("max_budget", "soft_budget", "rpm_limit", "tpm_limit", "expires_at"):
        if post.get(field):
            data[field] = post[field]
    return data


def issuable_teams(actor: Actor) -> QuerySet[Team]:
    """The teams the form offers: every team to org admins, one's own teams to the others."""
    teams = Team.objects.visible_to(actor, "view")
    return teams if actor.at_least(OrgRole.ADMIN) else teams.filter(pk__in=list(actor.team_roles()))


class KeysPage(OrgPage):
    """The keys the actor sees, and the form that issues one."""

    write_role = OrgRole.MEMBER  # then the team checks in the service decide, as in the API

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        serializer = KeySerializer(data=_key_form_data(request.POST),
                                   context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            return self.listing(errors=serializer.errors)
        try:
            issued = key_services.key_create(actor=self.actor, data=serializer.validated_data)
        except ValidationError as exc:
            return self.listing(errors=validation_detail(exc))
        return issued_page(self, issued, action="issued")

    def listing(self, *, errors: Any) -> HttpResponse:
        actor, query = self.actor, self.request.GET
        keys = VirtualKey.objects.visible_to(actor, "view")
        status = query.get("status", "")
        if status in ("active", "blocked", "revoked"):
            keys = keys.filter(status=status)
        page = Paginator(keys.select_related("team", "project", "owner").prefetch_related("allowed_routes"),
                         50).get_page(query.get("page"))
        teams = issuable_teams(actor)
        return self.page(
            "web/keys.html", http_status=400 if errors else 200,
            page=page, status=status, errors=errors, form=self.request.POST if errors else {}, teams=teams,
            projects=Project.objects.visible_to(actor, "view").filter(team__in=teams).select_related("team"),
            routes=ModelRoute.objects.visible_to(actor, "view").filter(is_active=True),
        )


def issued_page(view: OrgPage, issued: IssuedKey, **context: Any) -> HttpResponse:
    """The key's plaintext, shown once, with the Cline setup."""
    return view.page("web/key_issued.html", key=issued.key, plaintext=issued.plaintext, cline=issued.cline,
                     providers_json=json.dumps(issued.cline["cli_providers_json"], indent=2), **context)


class KeyAction(OrgPage):
    """Rotate, revoke, block or unblock one key (POST), then back to the keys."""

    write_role = OrgRole.MEMBER  # then the owner and team checks in the services decide
    parents = (Parent(VirtualKey, "key_id", action="change"),)

    def post(self, request: HttpRequest, *, verb: str, **kwargs: Any) -> HttpResponse:
        key = self.parent(VirtualKey)
        try:
            if verb == "rotate":
                grace = int(request.POST.get("grace_period_seconds") or 0)
                issued = key_services.key_rotate(actor=self.actor, key=key, grace_period_seconds=grace)
                return issued_page(self, issued, action="rotated", grace=grace)
            change = {"revoke": key_services.key_revoke, "block": key_services.key_block,
                      "unblock": key_services.key_unblock}.get(verb)
            if change is None:
                raise Http404
            change(actor=self.actor, key=key)
            messages.success(request, f"Key '{key.name}': {verb} done.")
        except (Conflict, ValueError) as exc:
            messages.error(request, str(exc) or "Invalid value.")
        except ValidationError as exc:
            messages.error(request, "; ".join(m for ms in validation_detail(exc).values() for m in ms))
        return redirect("web:keys", org_slug=self.organization.slug)


class RoutesPage(OrgPage):
    """The organization's routes, their deployments and fallbacks."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        routes = ModelRoute.objects.visible_to(self.actor, "view").prefetch_related(
            "deployments__credential", "fallback_links__fallback", "allowed_teams")
        return self.page("web/routes.html", routes=routes)


class AuditPage(OrgPage):
    """The audit log (org admins)."""

    read_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        entries = AuditLogEntry.objects.visible_to(self.actor, "view")
        return self.page("web/audit.html", page=Paginator(entries, 50).get_page(request.GET.get("page")))


def _numeric_first(label: str) -> tuple[int, float, str]:
    try:
        return 0, float(label), ""
    except ValueError:
        return 1, 0.0, label


PROJECT = Parent(Project, "project_id")


class ProjectPage(OrgPage):
    """A project: its Langfuse connection, evaluators, schedules, benchmarks and latest runs."""

    parents = (PROJECT,)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor, project = self.actor, self.parent(Project)
        runs = list(EvalRun.objects.visible_to(actor, "view").filter(project=project)
                    .select_related("evaluator_version__evaluator", "schedule")[:25])
        return self.page(
            "web/project.html", project=project,
            connection=LangfuseConnection.objects.visible_to(actor, "view").filter(project=project).first(),
            evaluators=Evaluator.objects.visible_to(actor, "view").filter(project=project).prefetch_related("versions"),
            schedules=EvalSchedule.objects.visible_to(actor, "view").filter(project=project).select_related("evaluator"),
            benchmarks=Benchmark.objects.visible_to(actor, "view").filter(project=project).prefetch_related("runs"),
            runs=runs, refresh=any(r.status in ("queued", "running") for r in runs),
            score_chart=charts.bar_chart([(f"#{r.pk}", r.mean_score or 0) for r in reversed(runs)
                                         if r.mean_score is not None], title="Mean score per run", color="#7a5af8"),
        )


class RunPage(OrgPage):
    """An evaluation run: its scores (lowest first, linked to Langfuse), distribution and report."""

    parents = (PROJECT, Parent(EvalRun, "run_id", within="project",
                               select_related=("evaluator_version__evaluator", "schedule")))

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor, project, run = self.actor, self.parent(Project), self.parent(EvalRun)
        conn = LangfuseConnection.objects.visible_to(actor, "view").filter(project=project).first()
        scores = list(EvalScore.objects.visible_to(actor, "view").filter(run=run).order_by("value", "trace_id")[:200])
        for score in scores:
            score.url = conn.trace_url(score.trace_id) if conn else ""  # type: ignore[attr-defined]
        return self.page(
            "web/run.html", project=project, run=run, scores=scores, refresh=run.status in ("queued", "running"),
            report=EvalReport.objects.visible_to(actor, "view").filter(run=run).first(),
            distribution_chart=charts.bar_chart(sorted(((str(k), float(v)) for k, v in run.distribution.items()),
                                                       key=lambda kv: _numeric_first(kv[0])),
                                                title="Scores", color="#7a5af8"),
        )
