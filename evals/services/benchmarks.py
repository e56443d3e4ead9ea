"""Benchmarks: a dataset run through each of a set of routes, scored by
evaluators (the judge) and deterministic metrics, summarized as a matrix
per route, recorded in Langfuse as dataset runs, compared with the previous
run, exported as CSV.

How a run works (like evaluation runs, `evals/services/runs.py`): the
main thread walks the (item, route) pairs and records each outcome (database,
Langfuse); a pool of `Benchmark.concurrency` threads does only HTTP to the
gateway: the route's answer, then the judge calls on it. Calls go through
the gateway with the project's service key, tagged `portal-benchmark` (never
evaluated), so they are budgeted, rate-limited (the client honours 429 +
Retry-After) and visible in usage. A failed call is an error in the matrix;
a budget refusal stops the run cleanly as `partial`. A retried task resumes:
results are unique per (run, item, route) and already recorded pairs are
skipped.

In Langfuse, each route of a run is one dataset run (an experiment) named
`<benchmark> #<run id> (<route>)`: one run item per dataset item, linked to
the trace of the route's call (the gateway sends it to the project's
Langfuse under the trace id the client chose), with the evaluators' scores
written on that trace. One dataset run per route is what makes Langfuse's
run comparison compare routes. Langfuse is where results are also shown,
not where they live: if it fails, the run goes on and says so in
`matrix.langfuse.error`.

Regressions (against the previous succeeded or partial run of the same
benchmark, per route present in both) are the `RULES` below."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import logging
import math
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from evals import metrics as m
from evals.concurrency import Bounded
from evals.gateway_client import GatewayCallError, GatewayClient
from evals.judge import JudgeParseError, ScoreSpec, judge, render
from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import (
    Benchmark,
    BenchmarkResult,
    BenchmarkRun,
    Dataset,
    DatasetItem,
    EvaluatorVersion,
    RunStatus,
)
from evals.service_keys import service_key
from evals.services.datasets import MAX_DATASET_ITEMS
from evals.services.runs import LANGFUSE_TYPES, ensure_score_config
from gateway.models import ModelRoute
from portal import audit
from portal.access import Actor
from portal.exceptions import Conflict
from portal.models import Organization, Project

log = logging.getLogger(__name__)
FIELDS = ("name", "dataset", "concurrency", "metrics")
MAX_ROUTES = 20
MAX_EVALUATORS = 10
MAX_ACTIVE_RUNS = 8  # benchmark runs of one organization queued or running at once, on the shared workers
PROGRESS_EVERY = 5
STALE_RUN = dt.timedelta(hours=2)  # longer than the task's hard time limit: its worker is gone
SCORE_NAMESPACE = uuid.UUID("0b7f3d52-9a3e-4c1b-8f0e-5d6a2c9e4b17")
EPSILON = 1e-9

#: The regression rule, per route present in both runs: (measure, what counts as a regression).
RULES = {
    "pass_rate": "down by more than 5 percentage points",
    "error_rate": "up by more than 5 percentage points",
    "evaluators.<name>.mean": "numeric scores: down by more than 5% of the score's range (max - min)",
    "evaluators.<name>.pass_rate": "boolean and categorical scores: down by more than 5 percentage points",
    "metrics.<name>.pass_rate": "down by more than 5 percentage points",
    "latency_p95_ms": "up by more than 20% and by more than 100 ms",
    "cost_per_item": "up by more than 20%",
}
POINTS = 0.05
RANGE_SHARE = 0.05
RISE = 0.20
LATENCY_FLOOR_MS = 100.0


# Benchmarks --------------------------------------------------------------


def usable_routes(project: Project) -> QuerySet[ModelRoute]:
    """Active routes of the project's organization that its team may use."""
    return ModelRoute.objects.filter(organization_id=project.organization_id, is_active=True).filter(
        Q(allowed_teams=None) | Q(allowed_teams=project.team_id)).distinct()


def check(project: Project, data: dict[str, Any]) -> dict[str, Any]:
    """Field errors for what is given (ValidationError), or the data with metric specs normalized."""
    errors: dict[str, Any] = {}
    if "routes" in data:
        routes = list(dict.fromkeys(data["routes"]))
        usable = set(usable_routes(project).filter(pk__in=[r.pk for r in routes]).values_list("pk", flat=True))
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
    data = check(project, data)
    benchmark = Benchmark(project=project)
    _apply(benchmark, data)
    audit.record(actor, "benchmark.create", benchmark, after=state(benchmark))
    return benchmark


@transaction.atomic
def benchmark_update(*, actor: Actor, benchmark: Benchmark, data: dict[str, Any]) -> Benchmark:
    actor.require_team_manager(benchmark.project.team_id)
    benchmark = Benchmark.objects.select_for_update().get(pk=benchmark.pk)
    before = state(benchmark)
    data = check(benchmark.project, {**data, "pk": benchmark.pk})
    _apply(benchmark, data)
    audit.record(actor, "benchmark.update", benchmark, before=before, after=state(benchmark))
    return benchmark


@transaction.atomic
def benchmark_delete(*, actor: Actor, benchmark: Benchmark) -> None:
    actor.require_team_manager(benchmark.project.team_id)
    audit.record(actor, "benchmark.delete", benchmark, before=state(benchmark))
    benchmark.delete()


# Starting a run ----------------------------------------------------------


@transaction.atomic
def run_create(*, actor: Actor, benchmark: Benchmark) -> BenchmarkRun:
    """A queued run, executed by the `evals` worker after commit. One run of a
    benchmark at a time (409); a run whose worker died is given up on."""
    actor.require_team_manager(benchmark.project.team_id)
    benchmark = Benchmark.objects.select_for_update().get(pk=benchmark.pk)
    stale = timezone.now() - STALE_RUN
    BenchmarkRun.objects.filter(Q(status=RunStatus.QUEUED, created_at__lt=stale) | Q(
        status=RunStatus.RUNNING, started_at__lt=stale), benchmark=benchmark).update(
        status=RunStatus.FAILED, error="No worker finished it.", finished_at=timezone.now())
    if BenchmarkRun.objects.filter(benchmark=benchmark, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists():
        raise Conflict("A run of this benchmark is in progress; wait for it to finish.")
    org_id = benchmark.project.organization_id
    Organization.objects.select_for_update().filter(pk=org_id).first()  # concurrent starts count each other
    busy = BenchmarkRun.objects.filter(benchmark__project__organization_id=org_id,
                                       status__in=[RunStatus.QUEUED, RunStatus.RUNNING], created_at__gte=stale)
    if busy.count() >= MAX_ACTIVE_RUNS:
        raise Conflict(f"{MAX_ACTIVE_RUNS} benchmark runs of this organization are queued or running; wait for "
                       "one to finish.")
    items, routes = benchmark.dataset.items.count(), benchmark.routes.count()
    if not items:
        raise ValidationError({"dataset": "The dataset has no items."})
    if not routes:
        raise ValidationError({"routes": "The benchmark has no routes."})
    run = BenchmarkRun.objects.create(benchmark=benchmark, total=items * routes)
    audit.record(actor, "benchmark.run", benchmark, after={"run": run.pk, "total": run.total})
    from evals.tasks_benchmarks import run_benchmark

    transaction.on_commit(lambda: run_benchmark.delay(run.pk))
    return run


# Executing a run ---------------------------------------------------------


class RunStopped(Exception):
    """Stop the run cleanly, keeping what was done."""


class BudgetRefused(Exception):
    """The gateway refused a call for budget: no further calls can succeed."""


@dataclass
class Judge:
    """An evaluator version as a run uses it."""

    version: EvaluatorVersion
    spec: ScoreSpec
    config_id: str | None = None

    @property
    def name(self) -> str:
        return self.version.evaluator.name


@dataclass
class Outcome:
    output: str = ""
    latency_ms: float | None = None
    cost: float = 0.0
    trace_id: str = ""
    error: str = ""
    metrics: dict[str, bool | None] = field(default_factory=dict)
    evaluators: dict[str, dict[str, Any]] = field(default_factory=dict)
    passed: bool | None = False


def messages_of(value: Any) -> list[dict[str, Any]]:
    """The chat messages of an item's input: a text is the user's message; a
    list of messages or `{"messages": [...]}` is sent as is; anything else is
    sent as JSON in one user message."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and value and all(isinstance(x, dict) and "role" in x for x in value):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return [{"role": "user", "content": text}]


def decide(metrics: dict[str, bool | None], evaluators: dict[str, dict[str, Any]]) -> bool | None:
    """An item passes when every metric and evaluator that gives a verdict passes;
    it is undecided (None) when a judge failed and nothing else failed."""
    verdicts = [v for v in metrics.values() if v is not None]
    verdicts += [e["passed"] for e in evaluators.values() if "error" not in e and e.get("passed") is not None]
    if any(v is False for v in verdicts):
        return False
    return None if any("error" in e for e in evaluators.values()) else True


def setup_of(run: BenchmarkRun) -> dict[str, Any]:
    """What the run measures, fixed when it starts (a retried task reuses it):
    routes, evaluator versions, metric specs, the dataset."""
    benchmark = run.benchmark
    judges = [e.current for e in benchmark.evaluators.filter(archived=False).order_by("name")]
    return {
        "dataset": {"id": benchmark.dataset_id, "name": benchmark.dataset.name,
                    "items": benchmark.dataset.items.count()},
        "routes": [{"route": r.name, "route_id": r.pk} for r in benchmark.routes.order_by("name")],
        "evaluators": [{"id": v.evaluator_id, "name": v.evaluator.name, "version": v.version, "version_id": v.pk,
                        "score_type": v.score_type, "min_value": v.min_value, "max_value": v.max_value,
                        "labels": v.labels, "pass_threshold": v.pass_threshold, "pass_labels": v.pass_labels}
                       for v in judges if v is not None],
        "metrics": benchmark.metrics,
    }


def score_id(run: BenchmarkRun, item: DatasetItem, route: ModelRoute, judge_: Judge) -> str:
    return str(uuid.uuid5(SCORE_NAMESPACE, f"{run.pk}:{item.pk}:{route.pk}:{judge_.version.pk}"))


def item_body(item: DatasetItem, dataset_name: str) -> dict[str, Any]:
    body = {"id": item.external_id, "datasetName": dataset_name, "input": item.input,
            "expectedOutput": item.expected_output, "metadata": item.metadata or None}
    if item.source_trace_id:
        body["sourceTraceId"] = item.source_trace_id
    return body


def push_dataset(client: LangfuseClient, dataset: Dataset, items: list[DatasetItem]) -> str:
    """The dataset in Langfuse, created if missing, with each item under its
    stable id (`external_id`), pushed when missing or changed. Its name."""
    name = dataset.langfuse_name or dataset.name
    if client.dataset(name) is None:
        client.create_dataset(name, dataset.description, {"portal_dataset": dataset.pk})
    # Read at most what such a dataset can hold: the host is the tenant's choice, its pages may never end.
    listed = itertools.islice(client.dataset_items(name), len(items) + MAX_DATASET_ITEMS)
    there = {i["id"]: i for i in listed if isinstance(i, dict) and isinstance(i.get("id"), str)}
    for item in items:
        body, have = item_body(item, name), there.get(item.external_id)
        if have is None or any(have.get(k) != body[k] for k in ("input", "expectedOutput", "metadata")):
            client.upsert_dataset_item(body)
    if not dataset.langfuse_name:
        Dataset.objects.filter(pk=dataset.pk, langfuse_name="").update(langfuse_name=name)
    return name


class Recorder:
    """Writes each result to Langfuse: a dataset run item linked to the route
    call's trace, and the evaluators' scores on that trace. After a Langfuse
    failure (beyond the client's retries) it stops writing and keeps the error."""

    def __init__(self, client: LangfuseClient | None, run: BenchmarkRun, judges: list[Judge]) -> None:
        self.client, self.run, self.judges = client, run, judges
        self.error = "" if client else "The project has no Langfuse connection."
        self.recorded = 0

    def run_name(self, route: str) -> str:
        return f"{self.run.langfuse_run_name} ({route})"

    def prepare(self, dataset: Dataset, items: list[DatasetItem]) -> None:
        if self.client is None:
            return
        try:
            push_dataset(self.client, dataset, items)
            for j in self.judges:
                j.config_id = ensure_score_config(self.client, j.version)
        except LangfuseError as exc:
            self.error = f"Langfuse failed: {exc}"[:300]

    def record(self, result: BenchmarkResult, item: DatasetItem, route: ModelRoute) -> None:
        if self.client is None or self.error or not result.trace_id:
            return  # a failed call has no trace to link
        meta = {"portal_benchmark": self.run.benchmark_id, "portal_benchmark_run": self.run.pk, "route": route.name}
        try:
            self.client.create_dataset_run_item({
                "runName": self.run_name(route.name), "datasetItemId": item.external_id, "traceId": result.trace_id,
                "runDescription": f"Portal benchmark '{self.run.benchmark.name}', route {route.name}",
                "metadata": meta})
            for j in self.judges:
                score = result.scores.get("evaluators", {}).get(j.name)
                if not score or "error" in score:
                    continue
                kind = j.version.score_type
                self.client.create_score({
                    "id": score_id(self.run, item, route, j), "traceId": result.trace_id, "name": j.name,
                    "value": score["label"] if kind == "categorical" else score["value"],
                    "dataType": LANGFUSE_TYPES[kind], "comment": score.get("comment") or None,
                    "configId": j.config_id, "metadata": {**meta, "portal_evaluator_version": j.version.version}})
            self.recorded += 1
        except LangfuseError as exc:
            self.error = f"Langfuse failed: {exc}"[:300]


class Runner:
    """Walks the (item, route) pairs not yet recorded, `concurrency` at a time."""

    def __init__(self, run: BenchmarkRun, gateway: GatewayClient, langfuse: LangfuseClient | None) -> None:
        self.run, self.gateway = run, gateway
        self.benchmark = run.benchmark
        self.setup = run.matrix
        versions = EvaluatorVersion.objects.select_related("evaluator", "judge_route").in_bulk(
            [e["version_id"] for e in self.setup["evaluators"]])
        self.judges = [Judge(versions[e["version_id"]], ScoreSpec.of(versions[e["version_id"]]))
                       for e in self.setup["evaluators"] if e["version_id"] in versions]
        self.metrics = m.parse_specs(self.setup["metrics"])
        self.recorder = Recorder(langfuse, run, self.judges)
        self.stopped = ""

    def attempt(self, item: DatasetItem, route: ModelRoute) -> Outcome:
        """One item through one route, scored (pool thread: HTTP only)."""
        try:
            answer = self.gateway.chat(route.name, messages_of(item.input), purpose="benchmark")
        except GatewayCallError as exc:
            if exc.budget:
                raise BudgetRefused(str(exc)) from None
            return Outcome(error=str(exc)[:500])
        output = answer.content or answer.tool_arguments or ""
        out = Outcome(output=output, latency_ms=answer.latency_ms, cost=answer.cost, trace_id=answer.trace_id,
                      metrics=m.evaluate(self.metrics, output, item.expected_output))
        source = {"input": item.input, "expected_output": item.expected_output, "metadata": item.metadata or {},
                  "output": output, "item_id": item.external_id, "route": route.name}
        for j in self.judges:
            v = j.version
            try:
                result = judge(self.gateway, route=v.judge_route.name, spec=j.spec, output_mode=v.output_mode,
                               prompt=render(v.prompt_template, v.variables, source))
            except JudgeParseError as exc:
                out.evaluators[j.name] = {"error": str(exc)[:500], "cost": exc.cost}
            except GatewayCallError as exc:
                if exc.budget:
                    raise BudgetRefused(str(exc)) from None
                out.evaluators[j.name] = {"error": f"The judge call failed: {exc}"[:500], "cost": 0.0}
            else:
                out.evaluators[j.name] = {"value": result.value, "label": result.label, "comment": result.comment,
                                          "passed": j.spec.passed(result.value, result.label),
                                          "cost": result.cost, "trace_id": result.trace_id}
        out.passed = decide(out.metrics, out.evaluators)
        return out

    def record(self, pair: tuple[DatasetItem, ModelRoute], future: Future[Outcome]) -> None:
        """Save one outcome and write it to Langfuse (main thread)."""
        item, route = pair
        try:
            outcome = future.result()
        except BudgetRefused as exc:
            self.stopped = self.stopped or f"The gateway refused a call for budget: {exc}"[:300]
            return
        except Exception as exc:  # a bug must not lose the run: it is this result's error
            log.exception("benchmark run %s: item %s through %s", self.run.pk, item.pk, route.name)
            outcome = Outcome(error=f"Internal error ({type(exc).__name__}).")
        result = BenchmarkResult(
            run=self.run, item=item, route=route, output=outcome.output, latency_ms=outcome.latency_ms,
            cost=Decimal(str(outcome.cost)), error=outcome.error, passed=outcome.passed, trace_id=outcome.trace_id,
            scores={"metrics": outcome.metrics, "evaluators": outcome.evaluators})
        try:
            with transaction.atomic():
                result.save()
        except IntegrityError:
            return  # another attempt of this task recorded it
        self.run.processed += 1
        judge_cost = sum(Decimal(str(e.get("cost") or 0)) for e in outcome.evaluators.values())
        self.run.total_cost += result.cost + judge_cost
        self.recorder.record(result, item, route)
        if self.run.processed % PROGRESS_EVERY == 0:
            self.run.save(update_fields=["processed", "total_cost"])

    def execute(self) -> None:
        run = self.run
        dataset = Dataset.objects.get(pk=self.setup["dataset"]["id"])  # as when the run started
        items = list(dataset.items.order_by("id"))
        routes = ModelRoute.objects.in_bulk([r["route_id"] for r in self.setup["routes"]])
        done = set(BenchmarkResult.objects.filter(run=run).values_list("item_id", "route_id"))
        pairs = [(item, routes[r["route_id"]]) for item in items for r in self.setup["routes"]
                 if r["route_id"] in routes and (item.pk, r["route_id"]) not in done]
        run.total, run.processed = len(done) + len(pairs), len(done)
        run.save(update_fields=["total", "processed"])
        self.recorder.prepare(dataset, items)
        calls: Bounded[Outcome, tuple[DatasetItem, ModelRoute]] = Bounded(
            self.benchmark.concurrency, self.record, "benchmark")
        with calls:  # leaving it lands what is in flight, even when the run stops
            for item, route in pairs:
                if self.stopped:
                    break
                calls.submit((item, route), self.attempt, item, route)
        if self.stopped:
            raise RunStopped(self.stopped)


def start(run_id: int) -> BenchmarkRun | None:
    """Mark the run as running; a queued or (task retry) running run may start."""
    updated = BenchmarkRun.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.RUNNING, started_at=timezone.now())
    if not updated:
        return None
    run = BenchmarkRun.objects.select_related("benchmark__project__organization", "benchmark__dataset").get(pk=run_id)
    if not run.matrix.get("routes"):
        run.matrix = setup_of(run)
        run.langfuse_run_name = f"{run.benchmark.name} #{run.pk}"[:200]
        run.save(update_fields=["matrix", "langfuse_run_name"])
    return run


def execute(run_id: int) -> BenchmarkRun | None:
    run = start(run_id)
    if run is None:
        return None
    project = run.benchmark.project
    conn = getattr(project, "langfuse_connection", None)
    langfuse = conn.client() if conn is not None and conn.enabled else None
    runner: Runner | None = None
    try:
        runner = Runner(run, GatewayClient(service_key(project)), langfuse)
        runner.execute()
        run.status = RunStatus.SUCCEEDED
    except RunStopped as stop:
        run.status, run.error = (RunStatus.PARTIAL if run.processed else RunStatus.FAILED), str(stop)[:1000]
    except SoftTimeLimitExceeded:
        run.status, run.error = (RunStatus.PARTIAL if run.processed else RunStatus.FAILED), "Stopped at the time limit."
    except DatabaseError:
        raise  # the task retries and resumes
    except Exception as exc:
        log.exception("benchmark run %s failed", run.pk)
        run.status, run.error = RunStatus.FAILED, f"Internal error ({type(exc).__name__})."
    finally:
        if langfuse is not None:
            langfuse.close()
    finish(run, runner.recorder if runner else None)
    return run


def finish(run: BenchmarkRun, recorder: Recorder | None) -> None:
    results = BenchmarkResult.objects.filter(run=run).select_related("route")
    run.processed = results.count()
    run.matrix = build_matrix(run.matrix, results)
    run.matrix["langfuse"] = {
        "run_names": {r["route"]: f"{run.langfuse_run_name} ({r['route']})" for r in run.matrix["routes"]},
        "recorded": recorder.recorded if recorder else 0, "error": recorder.error if recorder else ""}
    run.total_cost = Decimal(str(run.matrix["total_cost"]))
    run.comparison = compare_with_previous(run)
    run.finished_at = timezone.now()
    run.save()


# The matrix --------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(hits: int, of: int) -> float | None:
    return round(hits / of, 6) if of else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def route_stats(rows: list[BenchmarkResult], evaluators: list[dict[str, Any]],
                metrics: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if not r.error]
    decided = [r for r in rows if r.passed is not None]
    stats: dict[str, Any] = {
        "items": len(rows), "completed": len(answered), "errors": len(rows) - len(answered),
        "error_rate": rate(len(rows) - len(answered), len(rows)),
        "passed": sum(1 for r in rows if r.passed), "undecided": len(rows) - len(decided),
        "pass_rate": rate(sum(1 for r in decided if r.passed), len(decided)),
        "evaluators": {}, "metrics": {}}
    for e in evaluators:
        scores = [r.scores.get("evaluators", {}).get(e["name"]) for r in answered]
        good = [s for s in scores if s and "error" not in s]
        values = [s["value"] for s in good if s.get("value") is not None]
        verdicts = [s["passed"] for s in good if s.get("passed") is not None]
        stats["evaluators"][e["name"]] = {
            "mean": _round(sum(values) / len(values), 6) if values else None, "scored": len(good),
            "failed": sum(1 for s in scores if s and "error" in s),
            "pass_rate": rate(sum(1 for v in verdicts if v), len(verdicts))}
    for spec in metrics:
        verdicts = [r.scores.get("metrics", {}).get(spec["name"]) for r in answered]
        applicable = [v for v in verdicts if v is not None]
        stats["metrics"][spec["name"]] = {"pass_rate": rate(sum(1 for v in applicable if v), len(applicable)),
                                          "passed": sum(1 for v in applicable if v), "applicable": len(applicable)}
    cost = sum((r.cost for r in rows), Decimal(0))
    judge_cost = sum(Decimal(str(s.get("cost") or 0)) for r in rows
                     for s in r.scores.get("evaluators", {}).values())
    latencies = [r.latency_ms for r in answered if r.latency_ms is not None]
    stats |= {"cost": float(cost), "cost_per_item": float(cost / len(answered)) if answered else None,
              "judge_cost": float(judge_cost),
              "latency_p50_ms": _round(percentile(latencies, 50), 1),
              "latency_p95_ms": _round(percentile(latencies, 95), 1)}
    return stats


def build_matrix(setup: dict[str, Any], results: Iterable[BenchmarkResult]) -> dict[str, Any]:
    """Per route of the setup: pass rate, errors, mean score and pass rate per
    evaluator, pass rate per metric, cost per answered item, p50/p95 latency."""
    by_route: dict[int, list[BenchmarkResult]] = {}
    for result in results:
        by_route.setdefault(result.route_id, []).append(result)
    routes = [{"route": r["route"], "route_id": r["route_id"],
               **route_stats(by_route.get(r["route_id"], []), setup["evaluators"], setup["metrics"])}
              for r in setup["routes"]]
    total = sum(Decimal(str(r["cost"])) + Decimal(str(r["judge_cost"])) for r in routes)
    return {**setup, "routes": routes, "total_cost": float(total)}


# Comparison --------------------------------------------------------------


def _dig(stats: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = stats
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


@dataclass(frozen=True)
class Measure:
    keys: tuple[str, ...]  # where it is in a route's stats
    rule: str  # its key in RULES
    kind: str  # drop | rise | rise_ratio | rise_ratio_floor
    threshold: float

    @property
    def label(self) -> str:
        return ".".join(self.keys)


def measures(evaluators: list[dict[str, Any]], metric_names: list[str]) -> list[Measure]:
    """What is compared, and how much of a change is a regression (`RULES`)."""
    out = [Measure(("pass_rate",), "pass_rate", "drop", POINTS), Measure(("error_rate",), "error_rate", "rise", POINTS)]
    for e in evaluators:
        if e["score_type"] == "numeric" and e.get("min_value") is not None and e.get("max_value") is not None:
            out.append(Measure(("evaluators", e["name"], "mean"), "evaluators.<name>.mean", "drop",
                               RANGE_SHARE * (e["max_value"] - e["min_value"])))
        else:
            out.append(Measure(("evaluators", e["name"], "pass_rate"), "evaluators.<name>.pass_rate", "drop", POINTS))
    out += [Measure(("metrics", name, "pass_rate"), "metrics.<name>.pass_rate", "drop", POINTS)
            for name in metric_names]
    out += [Measure(("latency_p95_ms",), "latency_p95_ms", "rise_ratio_floor", RISE),
            Measure(("cost_per_item",), "cost_per_item", "rise_ratio", RISE)]
    return out


def regressed(measure: Measure, before: float, after: float) -> bool:
    kind, threshold = measure.kind, measure.threshold
    if kind == "drop":
        return before - after > threshold + EPSILON
    if kind == "rise":
        return after - before > threshold + EPSILON
    rises = after > before * (1 + threshold) + EPSILON and after - before > EPSILON
    return rises and (kind == "rise_ratio" or after - before > LATENCY_FLOOR_MS)


def compare(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Changes per route and measure between two matrices, with the regressions per `RULES`.
    Routes, evaluators and metrics are matched by name; only those in both runs are compared."""
    before_routes = {r["route"]: r for r in previous.get("routes", []) if "items" in r}
    before_evaluators = {e["name"] for e in previous.get("evaluators", [])}
    before_metrics = {x["name"] for x in previous.get("metrics", [])}
    evaluators = [e for e in current.get("evaluators", []) if e["name"] in before_evaluators]
    metric_names = [x["name"] for x in current.get("metrics", []) if x["name"] in before_metrics]
    routes, regressions = [], []
    for now in current.get("routes", []):
        then = before_routes.get(now["route"])
        if then is None:
            continue
        changes = []
        for measure in measures(evaluators, metric_names):
            before, after = _dig(then, measure.keys), _dig(now, measure.keys)
            if before is None or after is None:
                continue
            flagged = regressed(measure, before, after)
            changes.append({"measure": measure.label, "previous": before, "current": after,
                            "change": round(after - before, 9), "regression": flagged})
            if flagged:
                regressions.append({"route": now["route"], "measure": measure.label, "previous": before,
                                    "current": after, "rule": f"{measure.rule}: {RULES[measure.rule]}"})
        routes.append({"route": now["route"], "changes": changes})
    return {"routes": routes, "regressions": regressions,
            "new_routes": [r["route"] for r in current.get("routes", []) if r["route"] not in before_routes],
            "rules": RULES}


def compare_with_previous(run: BenchmarkRun) -> dict[str, Any]:
    previous = (BenchmarkRun.objects.filter(benchmark_id=run.benchmark_id, pk__lt=run.pk,
                                            status__in=[RunStatus.SUCCEEDED, RunStatus.PARTIAL])
                .order_by("-pk").first())
    if previous is None:
        return {"previous_run": None, "routes": [], "regressions": [], "new_routes": [], "rules": RULES}
    return {"previous_run": previous.pk, **compare(previous.matrix, run.matrix)}


# CSV export --------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def _text(value: Any) -> str:
    """A text cell; one that a spreadsheet would read as a formula is quoted."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def results_csv(run: BenchmarkRun) -> Iterator[str]:
    """One row per item x route: the answer, its scores, pass, latency, cost, error, trace id."""
    evaluators = [e["name"] for e in run.matrix.get("evaluators", [])]
    metric_names = [x["name"] for x in run.matrix.get("metrics", [])]
    writer = csv.writer(_Echo())
    yield writer.writerow(["item", "route", "input", "expected_output", "output", "passed", "latency_ms", "cost",
                           "error", "trace_id", *[c for n in evaluators for c in (f"evaluator:{n}",
                                                                                   f"evaluator:{n}:passed")],
                           *[f"metric:{n}" for n in metric_names]])
    rows = (BenchmarkResult.objects.filter(run=run).select_related("item", "route")
            .order_by("item_id", "route__name"))
    for r in rows.iterator(chunk_size=500):
        scores = r.scores.get("evaluators", {})
        cells = []
        for name in evaluators:
            s = scores.get(name) or {}
            cells += [_text(s.get("label") or s.get("value")) if "error" not in s else "error",
                      _flag(s.get("passed"))]
        yield writer.writerow([
            _text(r.item.external_id), r.route.name, _text(r.item.input), _text(r.item.expected_output),
            _text(r.output), _flag(r.passed), "" if r.latency_ms is None else f"{r.latency_ms:.1f}",
            f"{r.cost:f}", _text(r.error), r.trace_id, *cells,
            *[_flag(r.scores.get("metrics", {}).get(n)) for n in metric_names]])
