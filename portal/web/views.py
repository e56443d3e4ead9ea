"""The web UI for organization members. Same tenancy rules as the API: the
organization comes from the URL, non-members get 404, and every write goes
through the same serializers (for validation) and services."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from gateway import selectors
from gateway.api.serializers import KeySerializer
from gateway.models import ModelRoute, VirtualKey
from gateway.services import keys as key_services
from portal.access import Actor, NotAMember, actor_for_user
from portal.api.errors import validation_detail
from portal.exceptions import Conflict
from portal.models import AuditLogEntry, Membership, Organization, OrgRole, Project, Team
from portal.web import charts

View = Callable[..., HttpResponse]


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "web/error.html", {"title": "Not found", "message": "There is nothing here."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return render(request, "web/error.html", {"title": "Something went wrong",
                                              "message": "The error was logged."}, status=500)


def org_view(func: View) -> View:
    """Resolves the organization from the URL and the user's role in it (404 for outsiders)."""

    @login_required
    @wraps(func)
    def wrapper(request: HttpRequest, org_slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
        org = Organization.objects.by_slug(org_slug)
        if org is None:
            raise Http404
        try:
            actor = actor_for_user(org, request.user, ip_address=request.META.get("REMOTE_ADDR"))
        except NotAMember:
            raise Http404 from None
        try:
            return func(request, actor, *args, **kwargs)
        except PermissionDenied as exc:
            return render(request, "web/error.html", {"title": "Not allowed", "message": str(exc), "actor": actor},
                          status=403)

    return wrapper


def _ctx(actor: Actor, **extra: Any) -> dict[str, Any]:
    orgs = Organization.objects.filter(memberships__user=actor.user).order_by("slug")
    return {"actor": actor, "org": actor.organization, "orgs": orgs, **extra}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user  # login_required: never anonymous here
    membership = (Membership.objects.filter(user_id=user.pk or 0).select_related("organization")
                  .order_by("id").first())
    if membership is None:
        return render(request, "web/error.html", {"title": "No organization",
                                                  "message": "You are not a member of any organization yet."})
    return redirect("web:org", org_slug=membership.organization.slug)


@org_view
def org_overview(request: HttpRequest, actor: Actor) -> HttpResponse:
    org = actor.organization
    teams = Team.objects.filter(organization=org).prefetch_related("projects")
    series = selectors.daily_series(actor, days=30)
    today = timezone.now().date()
    window = {"from": today - dt.timedelta(days=29), "to": today}
    by_route = selectors.usage_report(actor, {"group_by": "route", **window})
    by_team = selectors.usage_report(actor, {"group_by": "team", **window})
    return render(request, "web/org.html", _ctx(
        actor, teams=teams,
        routes=ModelRoute.objects.filter(organization=org).prefetch_related("deployments"),
        key_count=key_services.keys_visible_to(actor, VirtualKey.objects.filter(organization=org)).count(),
        member_count=Membership.objects.filter(organization=org).count(),
        spend_chart=charts.bar_chart([(d, r["cost"]) for d, r in series], unit="$", title="Spend per day"),
        requests_chart=charts.bar_chart([(d, r["requests"]) for d, r in series], title="Requests per day",
                                        color="#067647"),
        totals=by_route["totals"], by_route=by_route["results"][:8], by_team=by_team["results"][:8],
    ))


def _key_form_data(post: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": post.get("name", ""), "team": post.get("team") or None,
                            "project": post.get("project") or None,
                            "allowed_routes": post.getlist("allowed_routes"),
                            "budget_period": post.get("budget_period") or "none"}
    for field in ("max_budget", "soft_budget", "rpm_limit", "tpm_limit", "expires_at"):
        if post.get(field):
            data[field] = post[field]
    return data


@org_view
def keys_page(request: HttpRequest, actor: Actor) -> HttpResponse:
    org = actor.organization
    errors: dict[str, Any] = {}
    if request.method == "POST":
        serializer = KeySerializer(data=_key_form_data(request.POST),
                                   context={"organization": org, "actor": actor})
        if serializer.is_valid():
            try:
                issued = key_services.key_create(actor=actor, data=serializer.validated_data)
            except ValidationError as exc:
                errors = validation_detail(exc)
            else:
                return render(request, "web/key_issued.html", _ctx(
                    actor, key=issued.key, plaintext=issued.plaintext, cline=issued.cline,
                    providers_json=json.dumps(issued.cline["cli_providers_json"], indent=2), action="issued"))
        else:
            errors = serializer.errors
    qs = key_services.keys_visible_to(actor, VirtualKey.objects.filter(organization=org))
    status = request.GET.get("status", "")
    if status in ("active", "blocked", "revoked"):
        qs = qs.filter(status=status)
    page = Paginator(qs.select_related("team", "project", "owner").prefetch_related("allowed_routes"), 50).get_page(
        request.GET.get("page"))
    teams = Team.objects.filter(organization=org)
    if not actor.at_least(OrgRole.ADMIN):
        teams = teams.filter(pk__in=list(actor.team_roles()))
    return render(request, "web/keys.html", _ctx(
        actor, page=page, status=status, errors=errors, form=request.POST if errors else {},
        teams=teams, projects=Project.objects.filter(organization=org, team__in=teams).select_related("team"),
        routes=ModelRoute.objects.filter(organization=org, is_active=True),
    ), status=400 if errors else 200)


@require_POST
@org_view
def key_action(request: HttpRequest, actor: Actor, key_id: int, verb: str) -> HttpResponse:
    qs = key_services.keys_visible_to(actor, VirtualKey.objects.filter(organization=actor.organization))
    key = get_object_or_404(qs, pk=key_id)
    try:
        if verb == "rotate":
            grace = int(request.POST.get("grace_period_seconds") or 0)
            issued = key_services.key_rotate(actor=actor, key=key, grace_period_seconds=grace)
            return render(request, "web/key_issued.html", _ctx(
                actor, key=issued.key, plaintext=issued.plaintext, cline=issued.cline,
                providers_json=json.dumps(issued.cline["cli_providers_json"], indent=2), action="rotated",
                grace=grace))
        change = {"revoke": key_services.key_revoke, "block": key_services.key_block,
                  "unblock": key_services.key_unblock}.get(verb)
        if change is None:
            raise Http404
        change(actor=actor, key=key)
        messages.success(request, f"Key '{key.name}': {verb} done.")
    except (Conflict, ValueError) as exc:
        messages.error(request, str(exc) or "Invalid value.")
    except ValidationError as exc:
        messages.error(request, "; ".join(m for ms in validation_detail(exc).values() for m in ms))
    return redirect("web:keys", org_slug=actor.organization.slug)


@org_view
def routes_page(request: HttpRequest, actor: Actor) -> HttpResponse:
    routes = (ModelRoute.objects.filter(organization=actor.organization)
              .prefetch_related("deployments__credential", "fallback_links__fallback", "allowed_teams"))
    return render(request, "web/routes.html", _ctx(actor, routes=routes))


@org_view
def audit_page(request: HttpRequest, actor: Actor) -> HttpResponse:
    actor.require(OrgRole.ADMIN)
    page = Paginator(AuditLogEntry.objects.filter(organization=actor.organization), 50).get_page(
        request.GET.get("page"))
    return render(request, "web/audit.html", _ctx(actor, page=page))


def _numeric_first(label: str) -> tuple[int, float, str]:
    try:
        return 0, float(label), ""
    except ValueError:
        return 1, 0.0, label


def _project(actor: Actor, project_id: int) -> Project:
    return get_object_or_404(Project, organization=actor.organization, pk=project_id)


@org_view
def project_page(request: HttpRequest, actor: Actor, project_id: int) -> HttpResponse:
    from evals.models import Benchmark, EvalRun, EvalSchedule, Evaluator

    project = _project(actor, project_id)
    runs = list(EvalRun.objects.filter(project=project).select_related("evaluator_version__evaluator", "schedule")[:25])
    running = any(r.status in ("queued", "running") for r in runs)
    return render(request, "web/project.html", _ctx(
        actor, project=project, connection=getattr(project, "langfuse_connection", None),
        evaluators=Evaluator.objects.filter(project=project).prefetch_related("versions"),
        schedules=EvalSchedule.objects.filter(project=project).select_related("evaluator"),
        benchmarks=Benchmark.objects.filter(project=project).prefetch_related("runs"),
        runs=runs, refresh=running,
        score_chart=charts.bar_chart([(f"#{r.pk}", r.mean_score or 0) for r in reversed(runs)
                                     if r.mean_score is not None], title="Mean score per run", color="#7a5af8"),
    ))


@org_view
def run_page(request: HttpRequest, actor: Actor, project_id: int, run_id: int) -> HttpResponse:
    from evals.models import EvalReport, EvalRun, EvalScore

    project = _project(actor, project_id)
    run = get_object_or_404(EvalRun.objects.select_related("evaluator_version__evaluator", "schedule"),
                            project=project, pk=run_id)
    conn = getattr(project, "langfuse_connection", None)
    scores = list(EvalScore.objects.filter(run=run).order_by("value", "trace_id")[:200])
    for score in scores:
        score.url = conn.trace_url(score.trace_id) if conn else ""  # type: ignore[attr-defined]
    return render(request, "web/run.html", _ctx(
        actor, project=project, run=run, scores=scores, refresh=run.status in ("queued", "running"),
        report=EvalReport.objects.filter(run=run).first(),
        distribution_chart=charts.bar_chart(sorted(((str(k), float(v)) for k, v in run.distribution.items()),
                                                   key=lambda kv: _numeric_first(kv[0])),
                                            title="Scores", color="#7a5af8"),
    ))
