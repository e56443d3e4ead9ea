"""Benchmarks through the REST API: validation, tenancy and roles; the matrix,
the regression rule and the CSV export, computed from results built here.
(Runs through the real gateway and worker: tests/e2e/test_benchmarks_e2e.py.)"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

import pytest

from evals.models import Benchmark, BenchmarkResult, BenchmarkRun, Dataset, DatasetItem, RunStatus
from evals.services import benchmarks
from gateway.models import ModelRoute
from gateway.services import routes
from portal import services
from portal.access import system_actor
from portal.models import AuditLogEntry, Project
from tests.factories import Tenant

pytestmark = pytest.mark.django_db


def project_url(t: Tenant, path: str, project: Project | None = None) -> str:
    return t.url(f"projects/{(project or t.project).pk}/{path}")


def make_dataset(project: Project, name: str = "qa", n: int = 3) -> Dataset:
    dataset = Dataset.objects.create(project=project, name=name)
    for i in range(n):
        DatasetItem.objects.create(dataset=dataset, external_id=f"{name}-{i}", input=f"question {i}",
                                   expected_output=f"answer {i}")
    return dataset


def make_route(t: Tenant, name: str, **extra: Any) -> ModelRoute:
    return routes.route_create(actor=system_actor(t.org, "tests"), data={"name": name, "deployments": [
        {"credential": None, "model": "gpt-4o-mini", "litellm_params": {"mock_response": "hi"}}], **extra})


def make_evaluator(t: Tenant, name: str = "correctness", project: Project | None = None) -> int:
    response = t.client("owner").post(project_url(t, "evaluators/", project), {
        "name": name, "template": "correctness", "judge_route": "chat"}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def body(of: Dataset, **extra: Any) -> dict[str, Any]:
    return {"name": "answers", "dataset": of.pk, "routes": ["chat"],
            "metrics": [{"type": "exact_match"}, {"type": "json_valid"}], "concurrency": 4} | extra


def create(t: Tenant, payload: dict[str, Any], role: str = "owner") -> Any:
    return t.client(role).post(project_url(t, "benchmarks/"), payload, format="json")


# Writing benchmarks ---------------------------------------------------------


def test_a_benchmark_is_created_read_changed_and_deleted(acme: Tenant) -> None:
    dataset = make_dataset(acme.project)
    evaluator = make_evaluator(acme)
    make_route(acme, "fast")
    response = create(acme, body(dataset, routes=["chat", "fast"], evaluators=[evaluator],
                                 metrics=[{"type": "regex", "pattern": "^answer \\d+$", "ignore_case": True}]))
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["routes"] == ["chat", "fast"] and created["evaluators"] == [evaluator]
    assert created["metrics"] == [{"name": "regex", "type": "regex", "pattern": "^answer \\d+$",
                                   "ignore_case": True}]
    viewer = acme.client("viewer")
    assert viewer.get(project_url(acme, "benchmarks/")).json()["count"] == 1
    assert viewer.get(project_url(acme, f"benchmarks/{created['id']}/")).json()["name"] == "answers"
    changed = acme.client("team_admin").patch(project_url(acme, f"benchmarks/{created['id']}/"), {
        "routes": ["fast"], "concurrency": 16}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["routes"] == ["fast"] and changed.json()["concurrency"] == 16
    entry = AuditLogEntry.objects.filter(action="benchmark.update").latest("id")
    assert entry.before["routes"] == ["chat", "fast"] and entry.after["routes"] == ["fast"]
    assert acme.client("admin").delete(project_url(acme, f"benchmarks/{created['id']}/")).status_code == 204
    assert not Benchmark.objects.exists()


@pytest.mark.parametrize("role,expected", [("owner", 201), ("admin", 201), ("team_admin", 201), ("member", 403),
                                           ("viewer", 403)])
def test_team_admins_and_org_admins_write_others_only_read(acme: Tenant, role: str, expected: int) -> None:
    dataset = make_dataset(acme.project)
    assert create(acme, body(dataset), role).status_code == expected
    existing = Benchmark.objects.first() or Benchmark.objects.get(pk=create(acme, body(dataset)).json()["id"])
    assert acme.client(role).get(project_url(acme, f"benchmarks/{existing.pk}/")).status_code == 200
    patched = acme.client(role).patch(project_url(acme, f"benchmarks/{existing.pk}/"), {"concurrency": 2},
                                      format="json")
    assert patched.status_code == (200 if expected == 201 else 403)
    run = acme.client(role).post(project_url(acme, f"benchmarks/{existing.pk}/run/"))
    assert run.status_code == (202 if expected == 201 else 403)


@pytest.mark.parametrize("change,field,message", [
    ({"routes": ["nope"]}, "routes", "Object with name=nope does not exist."),
    ({"routes": []}, "routes", "Choose at least one route."),
    ({"routes": ["other-team"]}, "routes", "Not available to this project's team: other-team."),
    ({"routes": ["retired"]}, "routes", "Not available to this project's team: retired."),
    ({"metrics": [{"type": "regex", "pattern": "(a"}]}, "metrics",
     "Metric 1 (regex): 'pattern' does not compile: missing ): (a."),
    ({"metrics": [{"type": "levenshtein"}]}, "metrics", "Metric 1: 'type' must be one of"),
    ({"metrics": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "b"}]}, "metrics",
     "Two metrics are named 'contains'"),
    ({"concurrency": 0}, "concurrency", "Ensure this value is greater than or equal to 1."),
    ({"concurrency": 65}, "concurrency", "Ensure this value is less than or equal to 64."),
    ({"name": ""}, "name", "This field may not be blank."),
])
def test_invalid_benchmarks_get_field_errors(acme: Tenant, change: dict[str, Any], field: str,
                                             message: str) -> None:
    other = services.team_create(actor=system_actor(acme.org, "tests"), data={"name": "research"})
    make_route(acme, "other-team", allowed_teams=[other])
    make_route(acme, "retired", is_active=False)
    response = create(acme, body(make_dataset(acme.project), **change))
    assert response.status_code == 400
    assert any(message in m for m in response.json()[field]), response.json()
    assert not Benchmark.objects.exists()


def test_a_name_is_used_once_per_project(acme: Tenant) -> None:
    dataset = make_dataset(acme.project)
    assert create(acme, body(dataset)).status_code == 201
    response = create(acme, body(dataset))
    assert response.status_code == 400
    assert response.json() == {"name": ["A benchmark with this name already exists."]}


def test_datasets_routes_and_evaluators_of_other_tenants_are_refused(acme: Tenant, globex: Tenant) -> None:
    second = services.project_create(actor=system_actor(acme.org, "tests"), data={"name": "other", "team": acme.team})
    foreign_dataset = make_dataset(globex.project, "theirs")
    sibling_dataset = make_dataset(second, "sibling")
    foreign_evaluator = make_evaluator(globex)
    sibling_evaluator = make_evaluator(acme, "sibling judge", project=second)
    dataset = make_dataset(acme.project)
    make_route(globex, "globex-only")
    for change, field in (({"dataset": foreign_dataset.pk}, "dataset"), ({"dataset": sibling_dataset.pk}, "dataset"),
                          ({"evaluators": [foreign_evaluator]}, "evaluators"),
                          ({"evaluators": [sibling_evaluator]}, "evaluators"),
                          ({"routes": ["globex-only"]}, "routes")):
        response = create(acme, body(dataset, **change))
        assert response.status_code == 400, (change, response.content)
        assert "does not exist" in json.dumps(response.json()[field]), response.json()


def test_other_organizations_and_projects_get_404(acme: Tenant, globex: Tenant) -> None:
    dataset = make_dataset(acme.project)
    bench = create(acme, body(dataset)).json()
    run = acme.client("owner").post(project_url(acme, f"benchmarks/{bench['id']}/run/")).json()
    paths = [f"benchmarks/{bench['id']}/", f"benchmarks/{bench['id']}/runs/", f"benchmarks/{bench['id']}/runs/"
             f"{run['id']}/", f"benchmarks/{bench['id']}/runs/{run['id']}/results.csv"]
    # globex's owner, with acme's URLs (acme's org slug: not a member -> 404)
    for path in paths:
        assert globex.client("owner").get(project_url(acme, path)).status_code == 404, path
    assert globex.client("owner").post(project_url(acme, f"benchmarks/{bench['id']}/run/")).status_code == 404
    # globex's owner, acme's benchmark id under globex's own project
    for path in paths:
        assert globex.client("owner").get(project_url(globex, path)).status_code == 404, path
    # acme's owner, the benchmark under another acme project
    second = services.project_create(actor=system_actor(acme.org, "tests"), data={"name": "other", "team": acme.team})
    for path in paths:
        assert acme.client("owner").get(project_url(acme, path, second)).status_code == 404, path
    assert acme.client("owner").delete(project_url(acme, f"benchmarks/{bench['id']}/", second)).status_code == 404
    assert Benchmark.objects.filter(pk=bench["id"]).exists()


# Starting runs ------------------------------------------------------------


def test_a_run_is_queued_with_its_progress_and_one_runs_at_a_time(acme: Tenant,
                                                                    django_capture_on_commit_callbacks: Any) -> None:
    make_route(acme, "fast")
    bench = create(acme, body(make_dataset(acme.project, n=5), routes=["chat", "fast"])).json()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = acme.client("team_admin").post(project_url(acme, f"benchmarks/{bench['id']}/run/"))
    assert response.status_code == 202, response.content
    run = response.json()
    assert (run["status"], run["processed"], run["total"], run["progress"]) == ("queued", 0, 10, 0.0)
    assert len(callbacks) == 1  # the worker is asked only once the run is committed
    again = acme.client("team_admin").post(project_url(acme, f"benchmarks/{bench['id']}/run/"))
    assert again.status_code == 409
    assert again.json() == {"detail": "A run of this benchmark is in progress; wait for it to finish."}
    listed = acme.client("viewer").get(project_url(acme, f"benchmarks/{bench['id']}/runs/")).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == run["id"]


def test_a_dataset_without_items_cannot_run(acme: Tenant) -> None:
    bench = create(acme, body(make_dataset(acme.project, n=0))).json()
    response = acme.client("owner").post(project_url(acme, f"benchmarks/{bench['id']}/run/"))
    assert response.status_code == 400
    assert response.json() == {"dataset": ["The dataset has no items."]}


# The matrix, the comparison, the CSV ----------------------------------------


def judged(value: float, passed: bool, cost: float = 0.0001) -> dict[str, Any]:
    return {"value": value, "label": "", "comment": "ok", "passed": passed, "cost": cost, "trace_id": "j" * 32}


def add(run: BenchmarkRun, item: DatasetItem, route: ModelRoute, *, passed: bool | None, latency: float | None,
        cost: str, metrics: dict[str, bool | None] | None = None, evaluator: dict[str, Any] | None = None,
        error: str = "", output: str | None = None) -> None:
    BenchmarkResult.objects.create(
        run=run, item=item, route=route, latency_ms=latency,
        output=output if output is not None else "" if error else f"answer of {route.name}",
        cost=Decimal(cost), error=error, passed=passed, trace_id="" if error else f"{item.pk:016x}{route.pk:016x}",
        scores={"metrics": metrics or {}, "evaluators": {"correctness": evaluator} if evaluator else {}})


@pytest.fixture
def finished_run(acme: Tenant) -> BenchmarkRun:
    """A run of 4 items through `chat` (a pass, a fail, an undecided one, an
    error) and `fast` (4 passes), finished as the worker finishes runs."""
    make_route(acme, "fast")
    dataset = make_dataset(acme.project, n=4)
    bench = create(acme, body(dataset, routes=["chat", "fast"], evaluators=[make_evaluator(acme)])).json()
    run = benchmarks.benchmark_run_create(actor=system_actor(acme.org, "tests"),
                                          benchmark=Benchmark.objects.get(pk=bench["id"]))
    run = benchmarks.BenchmarkExecution.claim(run.pk)
    assert run is not None
    chat, fast = ModelRoute.objects.get(name="chat"), ModelRoute.objects.get(name="fast")
    i1, i2, i3, i4 = dataset.items.order_by("id")
    add(run, i1, chat, passed=True, latency=100, cost="0.001", metrics={"exact_match": True, "json_valid": True},
        evaluator=judged(1.0, True))
    add(run, i2, chat, passed=False, latency=200, cost="0.002", metrics={"exact_match": False, "json_valid": True},
        evaluator=judged(0.5, False), output="=HYPERLINK(\"http://evil\")")
    add(run, i3, chat, passed=None, latency=300, cost="0.003", metrics={"exact_match": None, "json_valid": True},
        evaluator={"error": "The judge's answer could not be used, even after a repair.", "cost": 0.0001})
    add(run, i4, chat, passed=False, latency=None, cost="0", error="The gateway did not answer (APITimeoutError).")
    for item, latency in zip((i1, i2, i3, i4), (10, 20, 30, 40), strict=True):
        add(run, item, fast, passed=True, latency=latency, cost="0.0005",
            metrics={"exact_match": True, "json_valid": True}, evaluator=judged(1.0, True))
    run.status = RunStatus.SUCCEEDED
    benchmarks.BenchmarkExecution(run).end(None)  # as the worker finishes runs
    return run


def test_the_matrix_per_route(acme: Tenant, finished_run: BenchmarkRun) -> None:
    body_ = acme.client("viewer").get(project_url(
        acme, f"benchmarks/{finished_run.benchmark_id}/runs/{finished_run.pk}/")).json()
    assert body_["status"] == "succeeded" and body_["progress"] == 1.0 and body_["processed"] == 8
    matrix = body_["matrix"]
    chat, fast = matrix["routes"]
    assert chat["route"] == "chat" and fast["route"] == "fast"
    assert {k: chat[k] for k in ("items", "completed", "errors", "error_rate", "passed", "undecided")} == {
        "items": 4, "completed": 3, "errors": 1, "error_rate": 0.25, "passed": 1, "undecided": 1}
    assert chat["pass_rate"] == pytest.approx(1 / 3, abs=1e-6)  # 1 of the 3 decided items; the error fails
    assert chat["evaluators"]["correctness"] == {"mean": 0.75, "scored": 2, "failed": 1, "pass_rate": 0.5}
    assert chat["metrics"]["exact_match"] == {"pass_rate": 0.5, "passed": 1, "applicable": 2}
    assert chat["metrics"]["json_valid"] == {"pass_rate": 1.0, "passed": 3, "applicable": 3}
    assert chat["cost"] == pytest.approx(0.006) and chat["cost_per_item"] == pytest.approx(0.002)
    assert chat["judge_cost"] == pytest.approx(0.0003)
    assert (chat["latency_p50_ms"], chat["latency_p95_ms"]) == (200.0, 290.0)  # linear between ranks
    assert (fast["pass_rate"], fast["errors"], fast["latency_p50_ms"], fast["latency_p95_ms"]) == (1.0, 0, 25.0, 38.5)
    assert fast["cost_per_item"] == pytest.approx(0.0005)
    assert matrix["total_cost"] == pytest.approx(0.006 + 0.0003 + 0.002 + 0.0004)
    assert Decimal(str(body_["total_cost"])) == Decimal("0.0087")
    assert [e["name"] for e in matrix["evaluators"]] == ["correctness"] and matrix["evaluators"][0]["version"] == 1
    assert matrix["langfuse"]["run_names"] == {"chat": f"answers #{finished_run.pk} (chat)",
                                               "fast": f"answers #{finished_run.pk} (fast)"}
    assert body_["comparison"]["previous_run"] is None and body_["comparison"]["regressions"] == []


def test_a_run_is_compared_with_the_previous_finished_run(acme: Tenant, finished_run: BenchmarkRun) -> None:
    failed = BenchmarkRun.objects.create(benchmark=finished_run.benchmark, status=RunStatus.FAILED)
    run = benchmarks.BenchmarkExecution.claim(benchmarks.benchmark_run_create(
        actor=system_actor(acme.org, "tests"), benchmark=finished_run.benchmark).pk)
    assert run is not None
    chat, fast = ModelRoute.objects.get(name="chat"), ModelRoute.objects.get(name="fast")
    for item in finished_run.benchmark.dataset.items.all():
        add(run, item, chat, passed=True, latency=100, cost="0.001", metrics={"exact_match": True},
            evaluator=judged(1.0, True))
        add(run, item, fast, passed=False, latency=40, cost="0.0005", metrics={"exact_match": False},
            evaluator=judged(0.0, False))
    run.status = RunStatus.SUCCEEDED
    benchmarks.BenchmarkExecution(run).end(None)  # as the worker finishes runs
    comparison = acme.client("viewer").get(project_url(
        acme, f"benchmarks/{run.benchmark_id}/runs/{run.pk}/")).json()["comparison"]
    assert comparison["previous_run"] == finished_run.pk != failed.pk
    flagged = {(r["route"], r["measure"]) for r in comparison["regressions"]}
    assert flagged == {("fast", "pass_rate"), ("fast", "evaluators.correctness.mean"),
                       ("fast", "metrics.exact_match.pass_rate")}
    chat_changes = {c["measure"]: c for c in comparison["routes"][0]["changes"]}
    assert chat_changes["pass_rate"]["change"] == pytest.approx(2 / 3, abs=1e-6)  # better: not a regression
    assert chat_changes["error_rate"] == {"measure": "error_rate", "previous": 0.25, "current": 0.0,
                                          "change": -0.25, "regression": False}
    rule = next(r for r in comparison["regressions"] if r["measure"] == "evaluators.correctness.mean")["rule"]
    assert rule == "evaluators.<name>.mean: numeric scores: down by more than 5% of the score's range (max - min)"


def stats(**changes: Any) -> dict[str, Any]:
    base = {"route": "r", "items": 10, "pass_rate": 0.8, "error_rate": 0.0, "latency_p95_ms": 1000.0,
            "cost_per_item": 0.01, "evaluators": {"quality": {"mean": 4.0}, "toxic": {"pass_rate": 1.0}},
            "metrics": {"exact": {"pass_rate": 0.9}}}
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = base
        for p in parents:
            target = target[p]
        target[last] = value
    return base


SETUP = {"evaluators": [{"name": "quality", "score_type": "numeric", "min_value": 1, "max_value": 5},
                        {"name": "toxic", "score_type": "boolean", "min_value": None, "max_value": None}],
         "metrics": [{"name": "exact", "type": "exact_match"}]}


@pytest.mark.parametrize("changes,flagged", [
    ({}, set()),
    ({"pass_rate": 0.75}, set()),  # exactly 5 points down: not yet
    ({"pass_rate": 0.749}, {"pass_rate"}),
    ({"error_rate": 0.05}, set()),
    ({"error_rate": 0.051}, {"error_rate"}),
    ({"evaluators__quality__mean": 3.8}, set()),  # 0.2 = 5% of the 1..5 range
    ({"evaluators__quality__mean": 3.79}, {"evaluators.quality.mean"}),
    ({"evaluators__toxic__pass_rate": 0.95}, set()),  # boolean: its pass rate, not its mean
    ({"evaluators__toxic__pass_rate": 0.94}, {"evaluators.toxic.pass_rate"}),
    ({"metrics__exact__pass_rate": 0.849}, {"metrics.exact.pass_rate"}),
    ({"latency_p95_ms": 1200.0}, set()),
    ({"latency_p95_ms": 1201.0}, {"latency_p95_ms"}),
    ({"cost_per_item": 0.012}, set()),
    ({"cost_per_item": 0.0121}, {"cost_per_item"}),
    ({"pass_rate": 0.9, "cost_per_item": 0.005, "latency_p95_ms": 500.0}, set()),  # better is never flagged
])
def test_the_regression_rule(changes: dict[str, Any], flagged: set[str]) -> None:
    result = benchmarks.compare({**SETUP, "routes": [stats()]}, {**SETUP, "routes": [stats(**changes)]})
    assert {r["measure"] for r in result["regressions"]} == flagged


def test_small_latency_changes_are_noise_and_new_routes_are_not_compared() -> None:
    before = {**SETUP, "routes": [stats(latency_p95_ms=40.0)]}
    after = {**SETUP, "routes": [stats(latency_p95_ms=120.0), stats(route="new", pass_rate=0.0)]}
    result = benchmarks.compare(before, after)  # 3x slower, but by 80 ms only
    assert result["regressions"] == [] and result["new_routes"] == ["new"]
    slower = benchmarks.compare(before, {**SETUP, "routes": [stats(latency_p95_ms=141.0)]})
    assert [r["measure"] for r in slower["regressions"]] == ["latency_p95_ms"]


def test_the_csv_export_has_a_row_per_item_and_route(acme: Tenant, finished_run: BenchmarkRun) -> None:
    url = project_url(acme, f"benchmarks/{finished_run.benchmark_id}/runs/{finished_run.pk}/results.csv")
    response = acme.client("viewer").get(url, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (f'attachment; filename="benchmark-{finished_run.benchmark_id}'
                                               f'-run-{finished_run.pk}.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 8
    assert list(rows[0]) == ["item", "route", "input", "expected_output", "output", "passed", "latency_ms", "cost",
                             "error", "trace_id", "evaluator:correctness", "evaluator:correctness:passed",
                             "metric:exact_match", "metric:json_valid"]
    first, second = rows[0], rows[2]
    assert (first["item"], first["route"], first["input"], first["expected_output"]) == (
        "qa-0", "chat", "question 0", "answer 0")
    assert (first["output"], first["passed"], first["latency_ms"], first["cost"]) == (
        "answer of chat", "true", "100.0", "0.001000000")
    assert (first["evaluator:correctness"], first["evaluator:correctness:passed"], first["metric:exact_match"]) == (
        "1.0", "true", "true")
    assert len(first["trace_id"]) == 32
    assert second["output"] == "'=HYPERLINK(\"http://evil\")"  # a spreadsheet would run it as a formula
    undecided, error = rows[4], rows[6]
    assert (undecided["passed"], undecided["evaluator:correctness"], undecided["metric:exact_match"]) == (
        "", "error", "")
    assert (error["error"], error["passed"], error["latency_ms"], error["trace_id"], error["output"]) == (
        "The gateway did not answer (APITimeoutError).", "false", "", "", "")
