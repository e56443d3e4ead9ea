"""Evaluators (from the built-in templates, a prompt editor with a live preview) and their schedules."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect
from django.utils import timezone

from evals.api.serializers import EvaluatorSerializer, ScheduleSerializer
from evals.judge import VARIABLE, render
from evals.langfuse_client import LangfuseError
from evals.models import EvalRun, EvalSchedule, Evaluator, EvaluatorVersion, LangfuseConnection, ScoreType
from evals.services import evaluators as services
from evals.services.runs import trace_source
from evals.templates import TEMPLATES, template
from gateway.models import ModelRoute
from gateway.services.keys.rules import usable_routes
from portal.exceptions import Conflict
from portal.tenancy import Parent
from portal.web.base import PROJECT
from portal.web.evaluations.common import ProjectPage, drf_errors, errors_of, flash_errors, optional, text

#: What a prompt can refer to (`trace_source`): shown next to the editor.
SOURCE_FIELDS = ("input", "output", "expected_output", "metadata", "metadata.<key>", "name", "tags", "user_id",
                 "session_id", "trace_id")
#: The preview's trace when the project has no Langfuse connection (or no trace yet).
EXAMPLE_TRACE = {"id": "example", "name": "chat", "input": "How do I reset my password?",
                 "output": "Open Settings, choose Security, then 'Reset password' and follow the e-mail.",
                 "metadata": {"context": "Passwords are reset from Settings > Security.",
                              "expected_output": "From Settings > Security > Reset password."}}
SAMPLE_TTL = 300  # seconds: the live preview asks for a trace on every edit; Langfuse is asked once


def _lines(value: str) -> list[str]:
    return [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]


def parse_variables(text: str) -> tuple[dict[str, str], list[str]]:
    """`name = path` lines (e.g. `context = metadata.context`) as a mapping, and the lines that are not."""
    mapping, bad = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, path = line.partition("=")
        if not sep or not name.strip() or not path.strip():
            bad.append(line.strip()[:100])
        else:
            mapping[name.strip()] = path.strip()
    return mapping, bad


def variables_text(mapping: dict[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in mapping.items())


def evaluator_form_data(post: QueryDict) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The form's fields as the API's body (only what was filled in)."""
    data: dict[str, Any] = optional(post, "name", "description", "template", "judge_route", "score_type",
                                    "min_value", "max_value", "pass_threshold", "output_mode")
    if "prompt_template" in post:
        data["prompt_template"] = text(post, "prompt_template").replace("\r\n", "\n")
    mapping, bad = parse_variables(text(post, "variables"))
    data["variables"] = mapping
    for field in ("labels", "pass_labels"):
        if field in post:
            data[field] = _lines(text(post, field))
    return data, ({"variables": [f"Not 'name = path': {line}" for line in bad]} if bad else {})


def used_variables(prompt: str) -> list[str]:
    return list(dict.fromkeys(VARIABLE.findall(prompt)))


def sample_trace(conn: LangfuseConnection | None, trace_id: str = "") -> tuple[dict[str, Any], str]:
    """A trace of the project's Langfuse to preview on (the newest of the last week, or the one asked
    for), and where it came from. Cached briefly: the preview re-renders on every keystroke."""
    if conn is None or not conn.enabled:
        return EXAMPLE_TRACE, "an example trace (the project has no Langfuse connection)"
    asked = hashlib.sha256(trace_id.encode()).hexdigest()  # the id is user input: never raw in a cache key
    key = f"evals:preview-trace:{conn.pk}:{conn.updated_at.timestamp()}:{asked}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        with conn.client(max_retries=1) as client:
            if trace_id:
                trace = client.trace(trace_id)
            else:
                since = (timezone.now() - dt.timedelta(days=7)).isoformat()
                trace = next(iter(client.traces(from_time=since, limit=1, max_items=1)), None)
    except LangfuseError as exc:
        return EXAMPLE_TRACE, f"an example trace (Langfuse did not answer: {str(exc)[:200]})"
    if trace is None:
        found: tuple[dict[str, Any], str] = (EXAMPLE_TRACE, "an example trace (no trace in Langfuse in the last 7 days)")
    else:
        where = "the Langfuse stand-in" if conn.is_standin else "Langfuse"
        found = (trace, f"trace {trace.get('id')} from {where}")
    cache.set(key, found, SAMPLE_TTL)
    return found


def preview(prompt: str, mapping: dict[str, str], trace: dict[str, Any]) -> str:
    """The prompt the judge would get for this trace (the judge's own renderer)."""
    return render(prompt, mapping, trace_source(trace))


def editor(view: ProjectPage, form: dict[str, Any], show_preview: bool) -> dict[str, Any]:
    """The editor's context: routes, templates, variables, and (without JavaScript) the preview."""
    routes = ModelRoute.objects.visible_to(view.actor, "view").filter(
        is_active=True, pk__in=usable_routes(view.project.team_id, view.project.organization_id)).order_by("name")
    prompt = str(form.get("prompt_template") or "")
    context: dict[str, Any] = {
        "form": form, "routes": routes, "templates": TEMPLATES, "score_types": ScoreType.choices,
        "source_fields": SOURCE_FIELDS, "used_variables": used_variables(prompt),
        "templates_json": {k: {**t, "variables": variables_text(t.get("variables") or {})}
                           for k, t in TEMPLATES.items()},
    }
    if show_preview:
        trace, source = sample_trace(view.connection(), str(form.get("trace_id") or ""))
        mapping, _ = parse_variables(str(form.get("variables") or ""))
        context |= {"preview": preview(prompt, mapping, trace), "preview_source": source}
    return context


class EvaluatorsPage(ProjectPage):
    """The project's evaluators and schedules; the form that creates an evaluator (from a template)."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        key = request.GET.get("template", "")
        initial: dict[str, Any] = template(key) if key in TEMPLATES else {
            "score_type": "numeric", "prompt_template": "", "variables": {}, "labels": [], "pass_labels": []}
        return self.listing(form={**initial, "template": key if key in TEMPLATES else "",
                                  "variables": variables_text(initial.get("variables") or {})}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        data, errors = evaluator_form_data(request.POST)
        form = {**request.POST.dict(), "labels": _lines(request.POST.get("labels", "")),
                "pass_labels": _lines(request.POST.get("pass_labels", ""))}
        if "preview" in request.POST:  # the editor's preview without JavaScript (managers only, as the JSON one)
            return self.listing(form=form, errors=errors, show_preview=self.manages())
        if errors:
            return self.listing(form=form, errors=errors)
        serializer = EvaluatorSerializer(data=data, context=self.parent_context())
        if not serializer.is_valid():
            return self.listing(form=form, errors=drf_errors(serializer.errors))
        try:
            evaluator = services.evaluator_create(actor=self.actor, project=self.project,
                                                  data=serializer.validated_data)
        except (ValidationError, PermissionDenied) as exc:
            return self.listing(form=form, errors=errors_of(exc))
        messages.success(request, f"Evaluator '{evaluator.name}' created (version 1).")
        return redirect("web:evaluator", org_slug=self.organization.slug, project_id=self.project.pk,
                        evaluator_id=evaluator.pk)

    def listing(self, *, form: dict[str, Any], errors: dict[str, list[str]], show_preview: bool = False,
                schedule_form: dict[str, Any] | None = None, schedule_errors: dict[str, list[str]] | None = None
                ) -> HttpResponse:
        actor = self.actor
        evaluators = (Evaluator.objects.visible_to(actor, "view").filter(project=self.project).order_by("name")
                      .prefetch_related(Prefetch("versions", EvaluatorVersion.objects.select_related("judge_route")
                                                 .order_by("-version"))))
        schedules = (EvalSchedule.objects.visible_to(actor, "view").filter(project=self.project)
                     .select_related("evaluator").order_by("name"))
        return self.page("web/evaluations/evaluators.html", http_status=400 if errors or schedule_errors else 200,
                         evaluators=evaluators, schedules=schedules, errors=errors,
                         schedule_form=schedule_form or {"enabled": "on"}, schedule_errors=schedule_errors or {},
                         **editor(self, form, show_preview))

class EvaluatorPage(ProjectPage):
    """One evaluator: its versions, its schedules, and the editor that makes a new version."""

    parents = (PROJECT, Parent(Evaluator, "evaluator_id", within="project"))

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        evaluator = self.parent(Evaluator)
        current = evaluator.current
        form: dict[str, Any] = {"name": evaluator.name, "description": evaluator.description}
        if current is not None:
            form |= {f: getattr(current, f) for f in services.VERSION_FIELDS}
            form |= {"judge_route": current.judge_route.name, "variables": variables_text(current.variables)}
        return self.detail(form=form, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        evaluator = self.parent(Evaluator)
        data, errors = evaluator_form_data(request.POST)
        data.pop("template", None)
        if "archived" in request.POST:
            data = {"archived": request.POST["archived"] == "true"}
        form = {**request.POST.dict(), "labels": _lines(request.POST.get("labels", "")),
                "pass_labels": _lines(request.POST.get("pass_labels", ""))}
        if "preview" in request.POST:  # managers only: it fetches a trace from Langfuse
            return self.detail(form=form, errors=errors, show_preview=self.manages())
        if errors:
            return self.detail(form=form, errors=errors)
        serializer = EvaluatorSerializer(evaluator, data=data, partial=True, context=self.parent_context())
        if not serializer.is_valid():
            return self.detail(form=form, errors=drf_errors(serializer.errors))
        before = evaluator.current.version if evaluator.current else 0
        try:
            evaluator = services.evaluator_update(actor=self.actor, evaluator=evaluator,
                                                  data=serializer.validated_data)
        except (ValidationError, PermissionDenied) as exc:
            return self.detail(form=form, errors=errors_of(exc))
        after = evaluator.current.version if evaluator.current else 0
        messages.success(request, f"Saved: version {after}." if after != before else "Saved (the definition "
                                  "did not change, so no new version).")
        return redirect("web:evaluator", org_slug=self.organization.slug, project_id=self.project.pk,
                        evaluator_id=evaluator.pk)

    def detail(self, *, form: dict[str, Any], errors: dict[str, list[str]], show_preview: bool = False
               ) -> HttpResponse:
        evaluator = self.parent(Evaluator)
        return self.page("web/evaluations/evaluator.html", http_status=400 if errors else 200,
                         evaluator=evaluator, errors=errors,
                         versions=evaluator.versions.select_related("judge_route", "created_by").order_by("-version"),
                         schedules=EvalSchedule.objects.visible_to(self.actor, "view").filter(evaluator=evaluator),
                         **editor(self, form, show_preview))


class EvaluatorPreview(ProjectPage):
    """The live preview (JSON): the prompt rendered on a sample trace by the judge's renderer. It
    changes nothing, but shows a trace's content: for those who may edit evaluators only."""

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if not self.manages():
            return JsonResponse({"detail": "Only the team's admins and organization admins edit evaluators."},
                                status=403)
        prompt = request.POST.get("prompt_template", "")[:20_000]
        mapping, bad = parse_variables(request.POST.get("variables", "")[:5000])
        trace, source = sample_trace(self.connection(), request.POST.get("trace_id", "").strip()[:100])
        return JsonResponse({"preview": preview(prompt, mapping, trace), "source": source,
                             "variables": used_variables(prompt), "bad_variables": bad})


def schedule_form_data(post: QueryDict) -> dict[str, Any]:
    data: dict[str, Any] = optional(post, "name", "evaluator", "cron", "interval_seconds", "sampling_rate",
                                    "max_traces", "max_judge_spend", "concurrency", "initial_lookback_hours",
                                    "alert_below", "alert_drop")
    if "enabled" in post or "name" in post:
        data["enabled"] = post.get("enabled") in ("on", "true", "1")
    data.setdefault("cron", "")
    data.setdefault("interval_seconds", None)
    filters: dict[str, Any] = {}
    for name in ("name", "user_id"):
        if text(post, f"filter_{name}").strip():
            filters[name] = text(post, f"filter_{name}").strip()
    for name in ("tags", "environment"):
        if text(post, f"filter_{name}").strip():
            filters[name] = _lines(text(post, f"filter_{name}"))
    data["filters"] = filters
    return data


class SchedulesPage(EvaluatorsPage):
    """Create a schedule (the form on the evaluators page)."""

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        serializer = ScheduleSerializer(data=schedule_form_data(request.POST), context=self.parent_context())
        try:
            if not serializer.is_valid():
                raise ValidationError(drf_errors(serializer.errors))
            schedule = services.schedule_save(actor=self.actor, project=self.project, data=serializer.validated_data)
        except (ValidationError, PermissionDenied) as exc:
            return self.listing(form={"score_type": "numeric"}, errors={}, schedule_form=request.POST.dict(),
                                schedule_errors=errors_of(exc))
        messages.success(request, f"Schedule '{schedule.name}' created.")
        return redirect("web:evaluators", org_slug=self.organization.slug, project_id=self.project.pk)


def schedule_initial(schedule: EvalSchedule) -> dict[str, Any]:
    """The form's fields of a saved schedule (as the form posts them: texts)."""
    filters = schedule.filters or {}
    form: dict[str, Any] = {f: "" if getattr(schedule, f) is None else str(getattr(schedule, f))
                            for f in ("name", "cron", "interval_seconds", "sampling_rate", "max_traces",
                                      "max_judge_spend", "concurrency", "initial_lookback_hours", "alert_below",
                                      "alert_drop")}
    return form | {"evaluator": str(schedule.evaluator_id), "enabled": "on" if schedule.enabled else "",
                   "filter_name": filters.get("name", ""), "filter_user_id": filters.get("user_id", ""),
                   "filter_tags": ", ".join(filters.get("tags") or []),
                   "filter_environment": ", ".join(filters.get("environment") or [])}


class SchedulePage(ProjectPage):
    """One schedule: its settings (edit) and its latest runs."""

    parents = (PROJECT, Parent(EvalSchedule, "schedule_id", within="project", select_related=("evaluator",)))

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.detail(form=schedule_initial(self.parent(EvalSchedule)), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        schedule = self.parent(EvalSchedule)
        data = schedule_form_data(request.POST)
        if "metadata" in (schedule.filters or {}):  # set through the API; the form does not show it
            data["filters"]["metadata"] = schedule.filters["metadata"]
        serializer = ScheduleSerializer(schedule, data=data, partial=True, context=self.parent_context())
        try:
            if not serializer.is_valid():
                raise ValidationError(drf_errors(serializer.errors))
            services.schedule_save(actor=self.actor, project=self.project, schedule=schedule,
                                   data=serializer.validated_data)
        except (ValidationError, PermissionDenied) as exc:
            return self.detail(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Schedule '{schedule.name}' saved.")
        return redirect("web:schedule", org_slug=self.organization.slug, project_id=self.project.pk,
                        schedule_id=schedule.pk)

    def detail(self, *, form: dict[str, Any], errors: dict[str, list[str]]) -> HttpResponse:
        schedule = self.parent(EvalSchedule)
        runs = (EvalRun.objects.visible_to(self.actor, "view").filter(schedule=schedule)
                .select_related("evaluator_version").order_by("-created_at", "-pk")[:20])
        evaluators = Evaluator.objects.visible_to(self.actor, "view").filter(project=self.project).order_by("name")
        return self.page("web/evaluations/schedule.html", http_status=400 if errors else 200, schedule=schedule,
                         runs=runs, evaluators=evaluators, schedule_form=form, schedule_errors=errors)


class ScheduleAction(ProjectPage):
    """Enable, disable, run now, or delete a schedule (POST), then back to the evaluators."""

    parents = (PROJECT, Parent(EvalSchedule, "schedule_id", within="project", select_related=("evaluator",),
                               action="change"))

    def post(self, request: HttpRequest, *, verb: str, **kwargs: Any) -> HttpResponse:
        schedule = self.parent(EvalSchedule)
        try:
            if verb in ("enable", "disable"):
                services.schedule_save(actor=self.actor, project=self.project, schedule=schedule,
                                       data={"enabled": verb == "enable"})
                messages.success(request, f"Schedule '{schedule.name}' {verb}d.")
            elif verb == "delete":
                services.schedule_delete(actor=self.actor, schedule=schedule)
                messages.success(request, f"Schedule '{schedule.name}' deleted.")
            elif verb == "run":
                self.actor.require_team_manager(self.project.team_id)
                run = services.eval_run_create(project=self.project, evaluator=schedule.evaluator, schedule=schedule)
                services.enqueue(run)
                return redirect("web:run", org_slug=self.organization.slug, project_id=self.project.pk,
                                run_id=run.pk)
            else:
                raise Http404
        except (ValidationError, PermissionDenied, Conflict) as exc:
            flash_errors(request, errors_of(exc))
        return redirect("web:evaluators", org_slug=self.organization.slug, project_id=self.project.pk)
