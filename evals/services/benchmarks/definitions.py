"""Writing benchmarks: a dataset, the routes it runs through, the evaluators
and metrics that score it; validated against the project (its team's usable
routes, its datasets and evaluators) and audited."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from evals import metrics as m
from evals.models import Benchmark
from gateway.services.keys import usable_routes
from portal import audit
from portal.access import Actor
from portal.models import Project

FIELDS = ("name", "dataset", "concurrency", "metrics")
MAX_ROUTES = 20
MAX_EVALUATORS = 10


def validate(project: Project, data: dict[str, Any]) -> dict[str, Any]:
    """Field errors for what is given (ValidationError), or the data with metric specs normalized."""
    errors: dict[str, Any] = {}
    if "routes" in data:
        routes = list(dict.fromkeys(data["routes"]))
        usable = set(usable_routes(project.team_id, project.organization_id).filter(
            is_active=True, pk__in=[r.pk for r in routes]).values_list("pk", flat=True))
        unusable = [r.name for r in routes if r.pk not in usable]
        if not routes:
            errors["routes"] = "Choose at least one route."
        elif len(routes) > MAX_ROUTES:
            errors["routes"] = f"At most {MAX_ROUTES} routes."
        elif unusable:
            errors["routes"] = f"Not available to this project's team: {', '.join(sorted(unusable))}."
        data = {**data, "routes": routes}
    if "dataset" in data and data["dataset"].project_id != project.pk:
        errors["dataset"] = "Choose a dataset of this project."
    if "evaluators" in data:
        evaluators = list(dict.fromkeys(data["evaluators"]))
        if any(e.project_id != project.pk for e in evaluators):
            errors["evaluators"] = "Choose evaluators of this project."
        elif [e for e in evaluators if e.archived]:
            errors["evaluators"] = "Archived evaluators cannot be used: " + ", ".join(
                e.name for e in evaluators if e.archived) + "."
        elif len(evaluators) > MAX_EVALUATORS:
            errors["evaluators"] = f"At most {MAX_EVALUATORS} evaluators."
        data = {**data, "evaluators": evaluators}
    if "metrics" in data:
        try:
            data = {**data, "metrics": [x.spec() for x in m.parse_specs(data["metrics"])]}
        except m.MetricSpecError as exc:
            errors["metrics"] = exc.messages
    if "name" in data and Benchmark.objects.filter(project=project, name=data["name"]).exclude(
            pk=data.get("pk") or 0).exists():
        errors["name"] = "A benchmark with this name already exists."
    if errors:
        raise ValidationError(errors)
    return data


def state(benchmark: Benchmark) -> dict[str, Any]:
    return audit.snapshot(benchmark, FIELDS, routes=sorted(r.name for r in benchmark.routes.all()),
                          evaluators=sorted(e.pk for e in benchmark.evaluators.all()))


def _apply(benchmark: Benchmark, data: dict[str, Any]) -> None:
    for name in FIELDS:
        if name in data:
            setattr(benchmark, name, data[name])
    benchmark.full_clean(validate_constraints=False)
    benchmark.save()
    if "routes" in data:
        benchmark.routes.set(data["routes"])
    if "evaluators" in data:
        benchmark.evaluators.set(data["evaluators"])


@transaction.atomic
def benchmark_create(*, actor: Actor, project: Project, data: dict[str, Any]) -> Benchmark:
    actor.require_team_manager(project.team_id)
    missing = [f for f in ("name", "dataset", "routes") if f not in data]
    if missing:
        raise ValidationError({f: "This field is required." for f in missing})
    data = validate(project, data)
    benchmark = Benchmark(project=project)
    _apply(benchmark, data)
    audit.record(actor, "benchmark.create", benchmark, after=state(benchmark))
    return benchmark


@transaction.atomic
def benchmark_update(*, actor: Actor, benchmark: Benchmark, data: dict[str, Any]) -> Benchmark:
    actor.require_team_manager(benchmark.project.team_id)
    benchmark = Benchmark.objects.select_for_update().get(pk=benchmark.pk)
    before = state(benchmark)
    data = validate(benchmark.project, {**data, "pk": benchmark.pk})
    _apply(benchmark, data)
    audit.record(actor, "benchmark.update", benchmark, before=before, after=state(benchmark))
    return benchmark


@transaction.atomic
def benchmark_delete(*, actor: Actor, benchmark: Benchmark) -> None:
    actor.require_team_manager(benchmark.project.team_id)
    audit.record(actor, "benchmark.delete", benchmark, before=state(benchmark))
    benchmark.delete()
