"""Benchmarks end to end: a real Celery worker runs a dataset through mock
routes of the real LiteLLM proxy with the project's service key, judges the
answers with a mock judge, records a dataset run per route in the Langfuse
stand-in, and compares a run with the previous one."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from evals.models import BenchmarkResult, Dataset, DatasetItem
from gateway.models import KeyKind, UsageRecord, VirtualKey
from tests.e2e.conftest import Stack
from tests.e2e.helpers import chat, issue_key, until
from tests.factories import Tenant
from tests.llm_standin import LLMStandin

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RIGHT, WRONG = '{"answer": 42}', "The answer is 42."
QUESTIONS = [("q-0", "What is 6 x 7?", {"answer": 42}), ("q-1", "And 7 x 6?", {"answer": 42}),
             ("q-2", "What is 49 / 7?", {"answer": 7})]
METRICS = [{"type": "exact_match"}, {"type": "contains", "value": "answer", "ignore_case": True},
           {"type": "json_valid"}]


def project_url(t: Tenant, path: str) -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


def connect_langfuse(t: Tenant, stack: Stack) -> str:
    lf_project = f"lf-{t.org.slug}-{t.project.pk}"
    stack.langfuse.add_project(lf_project, lf_project, f"pk-{lf_project}", f"sk-{lf_project}")
    response = t.client("owner").put(project_url(t, "langfuse/"), {
        "host": stack.langfuse.url, "public_key": f"pk-{lf_project}", "secret_key": f"sk-{lf_project}"},
        format="json")
    assert response.status_code in (200, 201), response.content
    return lf_project


def mock_route(t: Tenant, name: str, answer: str, **extra: Any) -> int:
    response = t.client("admin").post(t.url("routes/"), {"name": name, "deployments": [
        {"model": "gpt-4o-mini", "litellm_params": {"mock_response": answer}}], **extra}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def dataset(t: Tenant, questions: list[tuple[str, Any, Any]] = QUESTIONS, name: str = "arithmetic") -> Dataset:
    ds = Dataset.objects.create(project=t.project, name=name)
    for external_id, question, expected in questions:
        DatasetItem.objects.create(dataset=ds, external_id=external_id, input=question, expected_output=expected,
                                   metadata={"topic": "arithmetic"})
    return ds


def benchmark(t: Tenant, ds: Dataset, routes: list[str], **extra: Any) -> dict[str, Any]:
    response = t.client("owner").post(project_url(t, "benchmarks/"), {
        "name": "answers", "dataset": ds.pk, "routes": routes, "metrics": METRICS, "concurrency": 4, **extra},
        format="json")
    assert response.status_code == 201, response.content
    return response.json()


def run(t: Tenant, bench: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    started = t.client("team_admin").post(project_url(t, f"benchmarks/{bench['id']}/run/"))
    assert started.status_code == 202, started.content
    url = project_url(t, f"benchmarks/{bench['id']}/runs/{started.json()['id']}/")
    until(lambda: t.client("viewer").get(url).json()["status"] in ("succeeded", "partial", "failed"), timeout, 0.2)
    return t.client("viewer").get(url).json()


def by_route(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["route"]: r for r in record["matrix"]["routes"]}


def test_a_benchmark_matrix_langfuse_experiment_comparison_and_csv(stack: Stack, acme: Tenant) -> None:
    lf = connect_langfuse(acme, stack)
    right_id = mock_route(acme, "bm-right", RIGHT)
    mock_route(acme, "bm-wrong", WRONG)
    mock_route(acme, "bm-broken", "litellm.ContextWindowExceededError")
    mock_route(acme, "bm-judge", '{"reasoning": "agrees with the reference", "score": 1}')
    judge = acme.client("owner").post(project_url(acme, "evaluators/"), {
        "name": "correctness", "template": "correctness", "judge_route": "bm-judge"}, format="json").json()
    ds = dataset(acme)
    bench = benchmark(acme, ds, ["bm-right", "bm-wrong", "bm-broken"], evaluators=[judge["id"]])

    first = run(acme, bench)
    assert first["status"] == "succeeded", first
    assert (first["processed"], first["total"], first["progress"]) == (9, 9, 1.0)
    routes = by_route(first)
    right, wrong, broken = routes["bm-right"], routes["bm-wrong"], routes["bm-broken"]
    # bm-right answers {"answer": 42}: exact for q-0 and q-1, not q-2 (expects 7); valid JSON; contains "answer"
    assert (right["completed"], right["errors"], right["passed"], right["undecided"]) == (3, 0, 2, 0)
    assert right["pass_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert {k: v["pass_rate"] for k, v in right["metrics"].items()} == pytest.approx(
        {"exact_match": 2 / 3, "contains": 1.0, "json_valid": 1.0}, abs=1e-6)
    # bm-wrong answers prose: never exact, never JSON, but it does contain "answer"
    assert (wrong["completed"], wrong["errors"], wrong["passed"], wrong["pass_rate"]) == (3, 0, 0, 0.0)
    assert {k: v["pass_rate"] for k, v in wrong["metrics"].items()} == {
        "exact_match": 0.0, "contains": 1.0, "json_valid": 0.0}
    # the judge's canned score, on every answer it saw
    for stats in (right, wrong):
        assert stats["evaluators"]["correctness"] == {"mean": 1.0, "scored": 3, "failed": 0, "pass_rate": 1.0}
        assert stats["cost_per_item"] > 0 and stats["judge_cost"] > 0 and stats["latency_p95_ms"] > 0
    # bm-broken fails every call: errors in the matrix, not a crash
    assert (broken["completed"], broken["errors"], broken["error_rate"], broken["pass_rate"]) == (0, 3, 1.0, 0.0)
    assert broken["evaluators"]["correctness"]["mean"] is None and broken["cost_per_item"] is None
    assert Decimal(str(first["total_cost"])) > 0
    assert first["comparison"]["previous_run"] is None

    # calls went through the gateway with the project's service key: 9 benchmark calls + 6 judgements
    service = VirtualKey.objects.get(project=acme.project, kind=KeyKind.SERVICE)
    until(lambda: UsageRecord.objects.filter(key=service).count() >= 12, 5)

    # Langfuse: the dataset with its items under their ids, a dataset run per route linked to the call traces
    server, results = stack.langfuse, BenchmarkResult.objects.filter(run_id=first["id"])
    project = server.project(lf)
    assert Dataset.objects.get(pk=ds.pk).langfuse_name == "arithmetic"
    assert sorted(i.id for i in project.dataset_items.values()) == ["q-0", "q-1", "q-2"]
    assert project.dataset_items["q-2"].expected_output == {"answer": 7}
    names = {run.id: run.name for run in project.dataset_runs.values()}
    assert sorted(names.values()) == [f"answers #{first['id']} (bm-right)", f"answers #{first['id']} (bm-wrong)"]
    assert first["matrix"]["langfuse"] == {"run_names": {r: f"answers #{first['id']} ({r})" for r in routes},
                                           "recorded": 6, "error": ""}
    for route in ("bm-right", "bm-wrong"):
        linked = {(i.dataset_item_id, i.trace_id) for i in project.dataset_run_items.values()
                  if names[i.dataset_run_id].endswith(f"({route})")}
        assert linked == {(r.item.external_id, r.trace_id) for r in results.filter(route__name=route)}
    traced = set(results.exclude(trace_id="").values_list("trace_id", flat=True))
    assert len(traced) == 6 and not results.filter(route__name="bm-broken").exclude(trace_id="").exists()
    assert server.wait_for(lambda: traced <= set(project.traces), timeout=20), "the gateway's traces did not arrive"
    assert {project.traces[t].name for t in traced} == {"portal-benchmark"}
    scores = [s for s in project.scores.values() if s.trace_id in traced]
    assert len(scores) == 6 and {(s.name, s.value) for s in scores} == {("correctness", 1.0)}
    assert server.violations == []

    # the CSV export: a row per item x route
    csv_url = project_url(acme, f"benchmarks/{bench['id']}/runs/{first['id']}/results.csv")
    response = acme.client("viewer").get(csv_url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["item"], r["route"]) for r in rows] == [
        (q, route) for q, _, _ in QUESTIONS for route in ("bm-broken", "bm-right", "bm-wrong")]
    q0 = {r["route"]: r for r in rows if r["item"] == "q-0"}
    assert (q0["bm-right"]["output"], q0["bm-right"]["passed"], q0["bm-right"]["metric:exact_match"]) == (
        RIGHT, "true", "true")
    assert json.loads(q0["bm-right"]["expected_output"]) == {"answer": 42}
    assert q0["bm-right"]["evaluator:correctness"] == "1.0" and len(q0["bm-right"]["trace_id"]) == 32
    assert (q0["bm-wrong"]["output"], q0["bm-wrong"]["passed"], q0["bm-wrong"]["metric:json_valid"]) == (
        WRONG, "false", "false")
    assert q0["bm-broken"]["passed"] == "false" and "context" in q0["bm-broken"]["error"].lower()
    assert q0["bm-broken"]["trace_id"] == "" and q0["bm-broken"]["latency_ms"] == ""

    # edit bm-right's canned answer: now right only for q-2, and the comparison flags it
    edited = acme.client("admin").patch(acme.url(f"routes/{right_id}/"), {"deployments": [
        {"model": "gpt-4o-mini", "litellm_params": {"mock_response": '{"answer": 7}'}}]}, format="json")
    assert edited.status_code == 200
    key = issue_key(acme)
    until(lambda: chat(stack.gateways[0].url, key["key"], model="bm-right").choices[0].message.content
          == '{"answer": 7}', 5)
    second = run(acme, bench)
    assert second["status"] == "succeeded", second
    assert by_route(second)["bm-right"]["pass_rate"] == pytest.approx(1 / 3, abs=1e-6)
    comparison = second["comparison"]
    assert comparison["previous_run"] == first["id"]
    flagged = {(r["route"], r["measure"]) for r in comparison["regressions"] if r["measure"] != "latency_p95_ms"}
    assert flagged == {("bm-right", "pass_rate"), ("bm-right", "metrics.exact_match.pass_rate")}
    regression = next(r for r in comparison["regressions"] if r["measure"] == "pass_rate")
    assert regression["previous"] == pytest.approx(2 / 3, abs=1e-6)
    assert regression["current"] == pytest.approx(1 / 3, abs=1e-6)
    assert regression["rule"] == "pass_rate: down by more than 5 percentage points"
    assert len({run.name for run in project.dataset_runs.values()}) == 4  # two more runs, the items reused
    assert len(project.dataset_items) == 3
    assert server.violations == []


def test_concurrency_is_bounded_and_progress_shows_while_it_runs(stack: Stack, acme: Tenant) -> None:
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow_answer(body: dict[str, Any]) -> str:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return "42"

    llm = LLMStandin(slow_answer).start()
    try:
        cred = acme.client("admin").post(acme.url("credentials/"), {
            "name": "sim", "provider": "openai_compatible", "settings": {"api_base": f"{llm.url}/v1"}},
            format="json").json()
        created = acme.client("admin").post(acme.url("routes/"), {"name": "bm-slow", "deployments": [
            {"credential": cred["id"], "model": "slow-sim"}]}, format="json")
        assert created.status_code == 201, created.content
        ds = dataset(acme, [(f"n-{i}", f"question {i}", "42") for i in range(15)], name="slow")
        bench = benchmark(acme, ds, ["bm-slow"], concurrency=3, metrics=[{"type": "exact_match"}])
        started = acme.client("owner").post(project_url(acme, f"benchmarks/{bench['id']}/run/")).json()
        url = project_url(acme, f"benchmarks/{bench['id']}/runs/{started['id']}/")
        seen: list[tuple[str, int, int]] = []

        def finished() -> bool:
            record = acme.client("viewer").get(url).json()
            seen.append((record["status"], record["processed"], record["total"]))
            return record["status"] in ("succeeded", "partial", "failed")

        until(finished, 60, 0.1)
        assert seen[-1] == ("succeeded", 15, 15)
        assert any(status == "running" and 0 < processed < 15 and total == 15 for status, processed, total in seen)
        assert state["max"] == 3  # Benchmark.concurrency calls in flight, never more
        stats = by_route(acme.client("viewer").get(url).json())["bm-slow"]
        assert stats["pass_rate"] == 1.0 and stats["latency_p50_ms"] >= 300
    finally:
        llm.stop()


def test_a_budget_refusal_stops_the_run_cleanly_as_partial(stack: Stack, acme: Tenant) -> None:
    mock_route(acme, "bm-priced", "42", input_cost_per_million=1, output_cost_per_million=1)  # $0.00003 a call
    response = acme.client("owner").patch(acme.url(f"projects/{acme.project.pk}/"), {"max_budget": "0.0001"},
                                          format="json")
    assert response.status_code == 200, response.content
    ds = dataset(acme, [(f"n-{i}", f"question {i}", "42") for i in range(10)], name="many")
    bench = benchmark(acme, ds, ["bm-priced"], concurrency=1, metrics=[{"type": "exact_match"}])
    record = run(acme, bench)
    assert record["status"] == "partial", record
    assert "budget" in record["error"].lower()
    assert 0 < record["processed"] < 10
    stats = by_route(record)["bm-priced"]
    assert stats["items"] == record["processed"] and stats["errors"] == 0 and stats["pass_rate"] == 1.0
    assert BenchmarkResult.objects.filter(run_id=record["id"]).count() == record["processed"]
