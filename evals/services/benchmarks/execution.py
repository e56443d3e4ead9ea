"""Starting and executing a benchmark run, on the run lifecycle
(`evals/lifecycle.py`): the main thread walks the (item, route) pairs not yet
recorded and records each outcome (database, Langfuse); the pool does only
HTTP to the gateway (`attempts.attempt`). A retried task resumes: results
are unique per (run, item, route) and recorded pairs are skipped. A budget
refusal stops the run cleanly as `partial`."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from evals import metrics as m
from evals.gateway_client import GatewayClient
from evals.judge import ScoreSpec
from evals.langfuse_client import LangfuseClient
from evals.lifecycle import Execution, RunStopped
from evals.models import Benchmark, BenchmarkResult, BenchmarkRun, Dataset, DatasetItem, EvaluatorVersion, RunStatus
from evals.service_keys import service_key
from evals.services.benchmarks.attempts import BudgetRefused, Judge, Outcome, attempt
from evals.services.benchmarks.comparison import compare_with_previous
from evals.services.benchmarks.matrix import build_matrix
from evals.services.benchmarks.recording import Recorder
from gateway.models import ModelRoute
from portal import audit
from portal.access import Actor
from portal.exceptions import Conflict
from portal.models import Organization

log = logging.getLogger(__name__)
MAX_ACTIVE_RUNS = 8  # benchmark runs of one organization queued or running at once, on the shared workers
PROGRESS_EVERY = 5
Pair = tuple[DatasetItem, ModelRoute]


@transaction.atomic
def benchmark_run_create(*, actor: Actor, benchmark: Benchmark) -> BenchmarkRun:
    """A queued run, executed by the `evals` worker after commit. One run of a
    benchmark at a time (409); a run whose worker died is given up on."""
    actor.require_team_manager(benchmark.project.team_id)
    benchmark = Benchmark.objects.select_for_update().get(pk=benchmark.pk)
    BenchmarkExecution.fail_stuck(Q(benchmark=benchmark))
    if BenchmarkRun.objects.filter(benchmark=benchmark, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists():
        raise Conflict("A run of this benchmark is in progress; wait for it to finish.")
    org_id = benchmark.project.organization_id
    Organization.objects.select_for_update().filter(pk=org_id).first()  # concurrent starts count each other
    busy = BenchmarkRun.objects.filter(benchmark__project__organization_id=org_id,
                                       status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exclude(
        BenchmarkExecution.stuck())
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
    from evals.tasks_benchmarks import execute_benchmark_run

    transaction.on_commit(lambda: execute_benchmark_run.delay(run.pk))
    return run


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


class BenchmarkExecution(Execution[Pair, Pair, Outcome]):
    """Walks the (item, route) pairs not yet recorded, `Benchmark.concurrency` at a time."""

    model = BenchmarkRun
    related = ("benchmark__project__organization", "benchmark__dataset")
    name = "benchmark run"
    time_reason = "Stopped at the time limit."

    def __init__(self, run: BenchmarkRun) -> None:
        self.benchmark = run.benchmark
        self.setup = run.matrix
        versions = EvaluatorVersion.objects.select_related("evaluator", "judge_route").in_bulk(
            [e["version_id"] for e in self.setup["evaluators"]])
        self.judges = [Judge(versions[e["version_id"]], ScoreSpec.of(versions[e["version_id"]]))
                       for e in self.setup["evaluators"] if e["version_id"] in versions]
        self.metrics = m.parse_specs(self.setup["metrics"])
        self.langfuse: LangfuseClient | None = None
        self.recorder: Recorder | None = None
        self.pairs: list[Pair] = []
        super().__init__(run)

    @classmethod
    def claim(cls, run_id: int) -> BenchmarkRun | None:
        """Also fixes what the run measures, when it first starts (a retried task reuses it)."""
        run = super().claim(run_id)
        if run is not None and not run.matrix.get("routes"):
            run.matrix = setup_of(run)
            run.langfuse_run_name = f"{run.benchmark.name} #{run.pk}"[:200]
            run.save(update_fields=["matrix", "langfuse_run_name"])
        return run

    def concurrency(self) -> int:
        return self.benchmark.concurrency

    def prepare(self) -> None:
        run, project = self.run, self.benchmark.project
        self.gateway = GatewayClient(service_key(project))
        conn = getattr(project, "langfuse_connection", None)
        self.langfuse = conn.client() if conn is not None and conn.enabled else None
        self.recorder = recorder = Recorder(self.langfuse, run, self.judges)
        dataset = Dataset.objects.get(pk=self.setup["dataset"]["id"])  # as when the run started
        items = list(dataset.items.order_by("id"))
        routes = ModelRoute.objects.in_bulk([r["route_id"] for r in self.setup["routes"]])
        done = set(BenchmarkResult.objects.filter(run=run).values_list("item_id", "route_id"))
        self.pairs = [(item, routes[r["route_id"]]) for item in items for r in self.setup["routes"]
                      if r["route_id"] in routes and (item.pk, r["route_id"]) not in done]
        run.total, run.processed = len(done) + len(self.pairs), len(done)
        run.save(update_fields=["total", "processed"])
        recorder.prepare(dataset, items)

    def close(self) -> None:
        if self.langfuse is not None:
            self.langfuse.close()

    def units(self) -> list[Pair]:
        return self.pairs

    def take(self, pair: Pair) -> Any:
        return pair, attempt, (self.gateway, self.judges, self.metrics, *pair)

    def record(self, pair: Pair, future: Future[Outcome]) -> bool:
        """Save one outcome and write it to Langfuse (main thread)."""
        item, route = pair
        try:
            outcome = future.result()
        except BudgetRefused as exc:
            self.stop(f"The gateway refused a call for budget: {exc}"[:300])
            return False
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
            return False  # another attempt of this task recorded it
        judge_cost = sum(Decimal(str(e.get("cost") or 0)) for e in outcome.evaluators.values())
        self.run.total_cost += result.cost + judge_cost
        if self.recorder is not None:
            self.recorder.record(result, item, route)
        return True

    def progress(self) -> None:
        if self.run.processed % PROGRESS_EVERY == 0:
            self.run.save(update_fields=["processed", "total_cost"])

    def note(self, stop: RunStopped | None, status: str) -> None:
        if stop is not None:
            self.run.error = (stop.error or stop.reason)[:1000]

    def conclude(self) -> None:
        """The matrix from the results recorded, where they are in Langfuse, and the comparison."""
        run, recorder = self.run, self.recorder
        results = BenchmarkResult.objects.filter(run=run).select_related("route")
        run.processed = results.count()
        run.matrix = build_matrix(run.matrix, results)
        run.matrix["langfuse"] = {
            "run_names": {r["route"]: f"{run.langfuse_run_name} ({r['route']})" for r in run.matrix["routes"]},
            "recorded": recorder.recorded if recorder else 0, "error": recorder.error if recorder else ""}
        run.total_cost = Decimal(str(run.matrix["total_cost"]))
        run.comparison = compare_with_previous(run)


def benchmark_run_execute(run_id: int) -> BenchmarkRun | None:
    """Execute a queued benchmark run (the `evals` worker); None when it already finished."""
    return BenchmarkExecution.handle(run_id)
