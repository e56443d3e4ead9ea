"""Evaluations end to end: a real Celery worker runs LLM-as-judge over traces
of the Langfuse stand-in, calling mock judge routes through the real LiteLLM
proxy with the project's service key."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from evals.models import EvalRun, EvalScore
from evals.tasks import execute_eval_run
from gateway.models import KeyKind, UsageRecord, VirtualKey
from tests.e2e.conftest import Stack
from tests.e2e.helpers import until
from tests.factories import Tenant
from tests.llm_standin import LLMStandin, repairing_judge

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


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


def judge_route(t: Tenant, name: str, answer: str, **extra: Any) -> None:
    response = t.client("admin").post(t.url("routes/"), {"name": name, "deployments": [
        {"model": "gpt-4o-mini", "litellm_params": {"mock_response": answer}}], **extra}, format="json")
    assert response.status_code == 201, response.content


def evaluator(t: Tenant, route: str, **body: Any) -> dict[str, Any]:
    response = t.client("owner").post(project_url(t, "evaluators/"), {
        "name": "helpfulness", "template": "helpfulness", "judge_route": route, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def run(t: Tenant, evaluator_id: int, since: dt.datetime) -> dict[str, Any]:
    response = t.client("owner").post(project_url(t, "runs/"), {
        "evaluator": evaluator_id, "window_start": since.isoformat()}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def finished(t: Tenant, run_id: int, timeout: float = 60) -> dict[str, Any]:
    def done() -> bool:
        return t.client("owner").get(project_url(t, f"runs/{run_id}/")).json()["status"] in (
            "succeeded", "partial", "failed")

    until(done, timeout, 0.2)
    return t.client("owner").get(project_url(t, f"runs/{run_id}/")).json()


def setup(stack: Stack, t: Tenant, n: int, answer: str = '{"reasoning": "clear and complete", "score": 4}'
          ) -> tuple[str, list[str], dict[str, Any], dt.datetime]:
    lf = connect_langfuse(t, stack)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ids = stack.langfuse.seed_traces(lf, n, start=since + dt.timedelta(minutes=1), name="support-chat")
    judge_route(t, "judge", answer)
    return lf, ids, evaluator(t, "judge"), since


def test_a_run_scores_every_trace_once_in_langfuse_and_the_portal(stack: Stack, acme: Tenant) -> None:
    lf, ids, ev, since = setup(stack, acme, 12)
    record = finished(acme, run(acme, ev["id"], since)["id"])
    assert record["status"] == "succeeded", record
    assert (record["considered"], record["sampled"], record["scored"], record["failed"]) == (12, 12, 12, 0)
    assert record["mean_score"] == 4.0 and record["distribution"] == {"4": 12} and record["progress"] == 1.0
    assert Decimal(str(record["judge_cost"])) > 0
    scores = stack.langfuse.project(lf).scores
    assert sorted(s.trace_id for s in scores.values()) == sorted(ids)
    assert {s.name for s in scores.values()} == {"helpfulness"}
    assert all(s.comment == "clear and complete" for s in scores.values())
    assert stack.langfuse.violations == []
    # judge calls went through the gateway with the project's service key: budgeted and visible
    service = VirtualKey.objects.get(project=acme.project, kind=KeyKind.SERVICE)
    until(lambda: UsageRecord.objects.filter(key=service).count() == 12, 5)
    listed = acme.client("owner").get(project_url(acme, f"runs/{record['id']}/scores/")).json()
    assert listed["count"] == 12 and listed["results"][0]["value"] == 4.0


def test_overlapping_runs_and_task_retries_score_each_trace_once(stack: Stack, acme: Tenant) -> None:
    lf, ids, ev, since = setup(stack, acme, 20)
    first, second = run(acme, ev["id"], since), run(acme, ev["id"], since)  # both queued at once
    execute_eval_run.delay(first["id"])  # a redelivered task for the first run
    a, b = finished(acme, first["id"]), finished(acme, second["id"])
    until(lambda: not EvalRun.objects.filter(status__in=["queued", "running"]).exists(), 30, 0.2)
    assert a["status"] == b["status"] == "succeeded"
    assert a["scored"] + b["scored"] == 20 and a["scored"] + a["already_scored"] == 20
    assert EvalScore.objects.filter(evaluator_version__evaluator_id=ev["id"], status="scored").count() == 20
    scores = list(stack.langfuse.project(lf).scores.values())
    assert len(scores) == 20 and len({s.trace_id for s in scores}) == 20
    assert stack.langfuse.violations == []


def test_langfuse_failures_mid_run_end_in_retries_or_a_resumable_partial_run(stack: Stack, acme: Tenant) -> None:
    lf, ids, ev, since = setup(stack, acme, 10)
    lf_server = stack.langfuse
    # transient: two 429s (with Retry-After), a 503 and a time-out on score writes, a time-out reading
    # traces (the worker waits 2 s here): all retried, the run succeeds
    faults = [lf_server.inject("POST", "/api/public/scores$", status=429, times=2, retry_after=0.2),
              lf_server.inject("POST", "/api/public/scores$", status=503, times=1, retry_after=None),
              lf_server.inject("POST", "/api/public/scores$", status=None, times=1, delay=3.0),
              lf_server.inject("GET", "/api/public/traces$", status=None, times=1, delay=3.0)]
    record = finished(acme, run(acme, ev["id"], since)["id"])
    assert record["status"] == "succeeded" and record["scored"] == 10, record
    assert [f.hits for f in faults] == [2, 1, 1, 1]  # every fault happened and was ridden out
    # persistent: score writes fail beyond the client's retries -> partial, then resumed without duplicates
    more = lf_server.seed_traces(lf, 6, start=since + dt.timedelta(minutes=30), name="support-chat")
    lf_server.inject("POST", "/api/public/scores$", status=500, times=1000, retry_after=None)
    broken = finished(acme, run(acme, ev["id"], since)["id"], timeout=90)
    assert broken["status"] == "partial" and "500" in broken["stop_reason"], broken
    lf_server.clear_faults()
    resumed = finished(acme, run(acme, ev["id"], since)["id"])
    assert resumed["status"] == "succeeded", resumed
    scores = list(lf_server.project(lf).scores.values())
    assert sorted(s.trace_id for s in scores) == sorted(ids + more)
    assert EvalScore.objects.filter(evaluator_version__evaluator_id=ev["id"]).count() == 16
    assert lf_server.violations == []


def test_an_unparseable_judge_is_repaired_or_counted_as_failed(stack: Stack, acme: Tenant) -> None:
    lf, ids, ev, since = setup(stack, acme, 4, answer="Looks great to me!")
    record = finished(acme, run(acme, ev["id"], since)["id"])
    assert record["status"] == "succeeded" and record["failed"] == 4 and record["scored"] == 0
    failed = EvalScore.objects.filter(run_id=record["id"]).first()
    assert failed is not None and "not a JSON object" in failed.error
    assert stack.langfuse.project(lf).scores == {}
    # a judge that answers prose first and JSON when asked to repair
    llm = LLMStandin(repairing_judge(score=5)).start()
    try:
        cred = acme.client("admin").post(acme.url("credentials/"), {
            "name": "sim", "provider": "openai_compatible", "settings": {"api_base": f"{llm.url}/v1"}},
            format="json").json()
        acme.client("admin").post(acme.url("routes/"), {"name": "sim-judge", "deployments": [
            {"credential": cred["id"], "model": "judge-sim"}]}, format="json")
        acme.client("owner").patch(project_url(acme, f"evaluators/{ev['id']}/"), {"judge_route": "sim-judge"},
                                   format="json")
        repaired = finished(acme, run(acme, ev["id"], since)["id"])
        assert repaired["scored"] == 4 and repaired["mean_score"] == 5.0, repaired
        assert len(llm.requests) == 8  # each trace: an answer and a repair
        repairs = [r for r in llm.requests if "could not be used" in json.dumps(r["messages"][-1])]
        assert len(repairs) == 4
    finally:
        llm.stop()


def test_the_judge_spend_limit_stops_a_run_cleanly(stack: Stack, acme: Tenant) -> None:
    lf, ids, ev, since = setup(stack, acme, 10)
    admin = acme.client("admin")
    route_id = admin.get(acme.url("routes/"), {"name": "judge"}).json()["results"][0]["id"]
    admin.patch(acme.url(f"routes/{route_id}/"), {"input_cost_per_million": 1, "output_cost_per_million": 1},
                format="json")  # $0.00003 a judgement (the mock answers 10 + 20 tokens)
    response = acme.client("owner").post(project_url(acme, "schedules/"), {
        "name": "capped", "evaluator": ev["id"], "interval_seconds": 3600, "max_judge_spend": "0.0001",
        "initial_lookback_hours": 1}, format="json")
    assert response.status_code == 201, response.content
    started = acme.client("owner").post(project_url(acme, f"schedules/{response.json()['id']}/run/"))
    record = finished(acme, started.json()["id"])
    assert record["status"] == "partial" and record["stop_reason"] == "judge spend limit reached", json.dumps(record)
    assert 0 < record["scored"] < 10
    assert Decimal(str(record["judge_cost"])) >= Decimal("0.0001")
    assert not EvalScore.objects.filter(status="claimed").exists()  # claims released for the next run
    assert len(stack.langfuse.project(lf).scores) == record["scored"]
