"""Benchmarks: create, run, the results matrix and charts comparing routes and runs."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect

from evals.api.benchmarks import BenchmarkRunSerializer, BenchmarkSerializer
from evals.models import Benchmark, BenchmarkRun, Dataset, Evaluator
from evals.services import benchmarks as services
from gateway.models import ModelRoute
from gateway.services.keys.rules import usable_routes
from portal.exceptions import Conflict
from portal.tenancy import Parent
from portal.web import charts
from portal.web.base import PROJECT
from portal.web.evaluations.common import ProjectPage, drf_errors, errors_of, flash_errors, optional, text

BENCHMARK = Parent(Benchmark, "benchmark_id", within="project", select_related=("dataset",))
FINISHED = ("succeeded", "partial")


def metrics_of(post: QueryDict) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = [{"type": kind} for kind in ("exact_match", "json_valid")
                                     if text(post, f"metric_{kind}")]
    if text(post, "metric_contains").strip():
        metrics.append({"type": "contains", "value": text(post, "metric_contains").strip()})
    if text(post, "metric_regex").strip():
        metrics.append({"type": "regex", "pattern": text(post, "metric_regex").strip()})
    return metrics


class BenchmarksPage(ProjectPage):
    """The project's benchmarks and the form that creates one."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(form={"metric_exact_match": "on"}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        post = request.POST
        data = {**optional(post, "name", "dataset", "concurrency"), "routes": post.getlist("routes"),
                "evaluators": post.getlist("evaluators"), "metrics": metrics_of(post)}
        serializer = BenchmarkSerializer(data=data, context=self.parent_context())
        try:
            if not serializer.is_valid():
                raise ValidationError(drf_errors(serializer.errors))
            benchmark = services.benchmark_create(actor=self.actor, project=self.project,
                                                  data=serializer.validated_data)
        except (ValidationError, PermissionDenied) as exc:
            form = {**post.dict(), "routes": post.getlist("routes"), "evaluators": post.getlist("evaluators")}
            return self.listing(form=form, errors=errors_of(exc))
        messages.success(request, f"Benchmark '{benchmark.name}' created: run it to fill the matrix.")
        return redirect("web:benchmark", org_slug=self.organization.slug, project_id=self.project.pk,
                        benchmark_id=benchmark.pk)

    def listing(self, *, form: dict[str, Any], errors: dict[str, list[str]]) -> HttpResponse:
        actor, project = self.actor, self.project
        rows = (Benchmark.objects.visible_to(actor, "view").filter(project=project).select_related("dataset")
                .prefetch_related("routes", "evaluators").order_by("name"))
        return self.page(
            "web/evaluations/benchmarks.html", http_status=400 if errors else 200, benchmarks=rows, form=form,
            errors=errors, datasets=Dataset.objects.visible_to(actor, "view").filter(project=project).order_by("name"),
            evaluators=Evaluator.objects.visible_to(actor, "view").filter(project=project, archived=False)
            .order_by("name"),
            routes=ModelRoute.objects.visible_to(actor, "view").filter(
                is_active=True, pk__in=usable_routes(project.team_id, project.organization_id)).order_by("name"))


def matrix_rows(matrix: dict[str, Any]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The matrix's evaluator and metric names, and one row per route with their cells in that order."""
    evaluators = [e["name"] for e in matrix.get("evaluators") or []]
    metrics = [m["name"] for m in matrix.get("metrics") or []]
    rows = []
    for route in matrix.get("routes") or []:
        rows.append({**route, "evaluator_cells": [(route.get("evaluators") or {}).get(n) or {} for n in evaluators],
                     "metric_cells": [(route.get("metrics") or {}).get(n) or {} for n in metrics]})
    return evaluators, metrics, rows


def comparison_charts(matrix: dict[str, Any], history: list[BenchmarkRun]) -> dict[str, Any]:
    routes = matrix.get("routes") or []
    pct = [(r["route"], round(100 * r["pass_rate"], 1)) for r in routes if r.get("pass_rate") is not None]
    p95 = [(r["route"], r["latency_p95_ms"]) for r in routes if r.get("latency_p95_ms") is not None]
    cost = [(r["route"], r["cost_per_item"]) for r in routes if r.get("cost_per_item") is not None]
    series: dict[str, list[tuple[str, float | None]]] = {}
    for run in history:
        for r in (run.matrix or {}).get("routes") or []:
            rate = r.get("pass_rate")
            series.setdefault(r["route"], []).append((f"#{run.pk}", None if rate is None else round(100 * rate, 1)))
    return {
        "pass_chart": charts.bar_chart(pct, unit="%", title="Pass rate per route") if pct else "",
        "latency_chart": charts.bar_chart(p95, unit=" ms", title="p95 latency per route", color="#7a5af8")
        if p95 else "",
        "cost_chart": charts.bar_chart(cost, unit="$", title="Cost per item per route", color="#067647") if cost else "",
        "history_chart": charts.line_chart(series, unit="%", title="Pass rate per route, run after run")
        if len(history) > 1 and series else "",
    }


class BenchmarkPage(ProjectPage):
    """A benchmark: its runs, and the chosen (default: latest finished) run's matrix and charts."""

    parents = (PROJECT, BENCHMARK)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        benchmark = self.parent(Benchmark)
        runs = list(BenchmarkRun.objects.visible_to(self.actor, "view").filter(benchmark=benchmark)
                    .order_by("-created_at", "-pk")[:50])
        chosen = request.GET.get("run", "")
        run = next((r for r in runs if str(r.pk) == chosen), None) or next(
            (r for r in runs if r.status in FINISHED), None)
        history = [r for r in reversed(runs) if r.status in FINISHED][-20:]
        context: dict[str, Any] = {"benchmark": benchmark, "runs": runs, "run": run,
                                   "active": next((r for r in runs if r.status in ("queued", "running")), None),
                                   "routes": benchmark.routes.all(), "bench_evaluators": benchmark.evaluators.all()}
        if run is not None and run.matrix:
            evaluators, metrics, rows = matrix_rows(run.matrix)
            context |= {"matrix_evaluators": evaluators, "matrix_metrics": metrics, "matrix": rows,
                        "comparison": run.comparison or {}, **comparison_charts(run.matrix, history)}
        return self.page("web/evaluations/benchmark.html", **context)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        benchmark = self.parent(Benchmark)
        try:
            run = services.benchmark_run_create(actor=self.actor, benchmark=benchmark)
            messages.success(request, f"Run #{run.pk} queued: {run.total} answers to get.")
        except (ValidationError, PermissionDenied, Conflict) as exc:
            flash_errors(request, errors_of(exc))
        return redirect("web:benchmark", org_slug=self.organization.slug, project_id=self.project.pk,
                        benchmark_id=benchmark.pk)


class BenchmarkRunProgress(ProjectPage):
    """A benchmark run's progress as JSON (the API's body without the matrix), polled by its page."""

    parents = (PROJECT, BENCHMARK, Parent(BenchmarkRun, "run_id", within="benchmark"))

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        data = dict(BenchmarkRunSerializer(self.parent(BenchmarkRun)).data)
        data.pop("matrix", None)
        data.pop("comparison", None)
        response = JsonResponse(data)
        response["Cache-Control"] = "no-store"
        return response
