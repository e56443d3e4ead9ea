"""The demo's Langfuse traces, evaluation objects and 30 days of usage (for `seed_demo`).

Everything is idempotent: traces have fixed ids (Langfuse upserts them; the stand-in, which keeps
them in memory, gets them again on every start), evaluation objects are made once, usage events
have ids per day and slot. The evaluator, schedule, dataset and benchmark are made through the
services, as a user would; the finished run, its scores and report, and the benchmark's results
are the record of work done (what the worker writes when it runs), filled in directly because the
gateway and the worker are not up yet when the demo seeds."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

from django.utils import timezone

from evals.langfuse_client import LangfuseError
from evals.metrics import evaluate, parse_specs
from evals.models import (
    Benchmark,
    BenchmarkResult,
    BenchmarkRun,
    Dataset,
    EvalReport,
    EvalRun,
    EvalScore,
    Evaluator,
    LangfuseConnection,
)
from evals.services import benchmarks, datasets, evaluators, langfuse
from evals.services.benchmarks.comparison import compare_with_previous
from evals.services.benchmarks.execution import setup_of
from evals.services.benchmarks.matrix import build_matrix
from evals.services.judging import summarize
from evals.services.reports import render_markdown
from evals.services.runs import score_id
from gateway import usage
from gateway.models import ModelRoute, VirtualKey
from portal.access import Actor
from portal.models import Project

#: The stand-in's project and keys (`python -m tests.langfuse_standin --project ...`).
STANDIN_PROJECT, STANDIN_PUBLIC_KEY, STANDIN_SECRET_KEY = "demo", "pk-lf-demo", "sk-lf-demo"
TRACE_NAMESPACE = uuid.UUID("0b7e55a2-4c1e-4f7e-9d1a-6d656d6f2d31")
#: (question, answer, how helpful the answer is 1-5, expected answer): the demo's support assistant.
CONVERSATIONS = [
    ("How do I reset my password?", "Open Settings > Security and choose 'Reset password'; we e-mail you a link.", 5,
     "Settings > Security > Reset password."),
    ("Can I change the e-mail address of my account?", "Yes: Settings > Profile > E-mail, then confirm the new "
     "address from the message we send.", 5, "Settings > Profile > E-mail."),
    ("Where do I find my invoices?", "Invoices are under Billing > Invoices, as PDF.", 4, "Billing > Invoices."),
    ("How do I add a teammate?", "Ask an admin to invite them from Members.", 4, "Members > Invite."),
    ("Why was my card declined?", "Card payments can fail for many reasons.", 2,
     "The bank declined it: check the card's limit and 3-D Secure, or use another card."),
    ("Do you have an API?", "Yes, a REST API; its documentation is at /api/v1/docs/.", 5, "Yes: /api/v1/docs/."),
    ("How do I export my data?", "I am not sure what you mean.", 1, "Settings > Data > Export (a ZIP of JSON files)."),
    ("Is there a dark mode?", "Dark mode follows your system's setting.", 3, "Yes: it follows the system setting."),
]
TRACES = 48  # six of each conversation, over the last six days
REPORT_SUMMARY = ("Most answers point to the right place in the product. The low scores are answers that do not "
                  "answer: they say the request is unclear or give a generic reason.")
REPORT_GROUPS: list[dict[str, str]] = [
    {"pattern": "Generic non-answers", "explanation": "The assistant answers with a general statement (card "
     "payments can fail for many reasons) instead of what the user can do.",
     "suggestion": "Ask the model to end every answer with the concrete next step, and give it the help "
     "centre's article on declined payments as context."},
    {"pattern": "Claims not to understand a clear request", "explanation": "'How do I export my data?' is "
     "answered with 'I am not sure what you mean'.", "suggestion": "Add the data export to the system "
     "prompt's list of features, with where to find it."},
]


def trace_id(i: int) -> str:
    return uuid.uuid5(TRACE_NAMESPACE, f"trace-{i}").hex


def judge_answer() -> str:
    """The mock judge route's one answer, good for both of its uses: a judge's verdict (`score`,
    `reasoning`) and a run's report (`summary`, `groups` linked to the demo's traces, of which a
    report keeps those among the run's lowest scores)."""
    return json.dumps({
        "reasoning": "The answer addresses the request with a concrete step.", "score": 4,
        "summary": "(A mock report: the demo's judge route always gives this answer.) " + REPORT_SUMMARY,
        "groups": [{**REPORT_GROUPS[0], "trace_ids": [trace_id(i) for i in range(TRACES)]}]})


def connect(*, actor: Actor, project: Project, host: str, public_key: str, secret_key: str) -> LangfuseConnection:
    """The project's Langfuse connection (checked against the server by the service)."""
    return langfuse.connection_save(actor=actor, project=project, host=host, public_key=public_key,
                                    secret_key=secret_key, enabled=True)


def seed_traces(conn: LangfuseConnection) -> list[dict[str, Any]]:
    """`TRACES` traces of the demo project, each with one generation, over the last six days."""
    now = timezone.now().replace(microsecond=0)
    events, traces = [], []
    for i in range(TRACES):
        question, answer, quality, expected = CONVERSATIONS[i % len(CONVERSATIONS)]
        when = now - dt.timedelta(hours=3 * (TRACES - i))
        tid, stamp = trace_id(i), when.isoformat().replace("+00:00", "Z")
        route = ("chat", "fast")[i % 3 == 0]
        traces.append({"id": tid, "quality": quality, "question": question})
        events.append({"type": "trace-create", "id": f"{tid}-t", "timestamp": stamp, "body": {
            "id": tid, "timestamp": stamp, "name": "support-chat", "userId": f"customer-{i % 7}",
            "sessionId": f"session-{i // 3}", "tags": ["demo", route], "input": question, "output": answer,
            "metadata": {"route": route, "expected_output": expected}}})
        latency = 0.4 + (i * 37 % 23) / 10
        events.append({"type": "generation-create", "id": f"{tid}-g", "timestamp": stamp, "body": {
            "id": f"{tid}-gen", "traceId": tid, "name": "chat", "model": f"demo-{route}", "startTime": stamp,
            "endTime": (when + dt.timedelta(seconds=latency)).isoformat().replace("+00:00", "Z"),
            "input": [{"role": "user", "content": question}], "output": {"role": "assistant", "content": answer},
            "usageDetails": {"input": 40 + i % 9, "output": 25 + 3 * (i % 5)},
            "costDetails": {"total": round(0.00012 + 0.00001 * (i % 5), 6)}}})
    with conn.client() as client:
        for start in range(0, len(events), 50):
            answer = client.ingest(events[start:start + 50])
            if answer.get("errors"):
                raise LangfuseError(f"Langfuse refused demo traces: {json.dumps(answer['errors'])[:300]}")
    return traces


def seed_evaluations(*, actor: Actor, project: Project, conn: LangfuseConnection | None,
                     traces: list[dict[str, Any]]) -> dict[str, Any]:
    """An evaluator, a schedule, a finished run with scores and a report, a dataset, a benchmark
    with two finished runs. Returns what exists (ids), whether made now or before."""
    judge = ModelRoute.objects.get(organization_id=project.organization_id, name="judge")
    evaluator = Evaluator.objects.filter(project=project, name="helpfulness").first()
    if evaluator is None:
        evaluator = evaluators.evaluator_create(actor=actor, project=project, data={
            "name": "helpfulness", "template": "helpfulness", "judge_route": judge})
        evaluators.schedule_save(actor=actor, project=project, data={
            "name": "hourly helpfulness", "evaluator": evaluator, "interval_seconds": 3600, "max_traces": 50,
            "enabled": True, "initial_lookback_hours": 24})
        if conn is not None and traces:
            finished_run(actor=actor, project=project, evaluator=evaluator, conn=conn, traces=traces, judge=judge)
    dataset = Dataset.objects.filter(project=project, name="support-faq").first()
    if dataset is None:
        dataset = datasets.dataset_create(actor=actor, project=project, data={
            "name": "support-faq", "description": "Questions customers ask, with the answer we expect."})
        lines = "\n".join(json.dumps({"id": f"faq-{n}", "input": q, "expected_output": e,
                                      "metadata": {"topic": q.split()[-1].strip("?")}})
                          for n, (q, _, _, e) in enumerate(CONVERSATIONS))
        datasets.dataset_import(actor=actor, dataset=dataset, content=lines.encode(), fmt="jsonl")
    benchmark = Benchmark.objects.filter(project=project, name="chat vs fast").first()
    if benchmark is None:
        routes = list(ModelRoute.objects.filter(organization_id=project.organization_id, name__in=["chat", "fast"]))
        benchmark = benchmarks.benchmark_create(actor=actor, project=project, data={
            "name": "chat vs fast", "dataset": dataset, "routes": routes, "evaluators": [],
            "metrics": [{"type": "contains", "value": "answer", "ignore_case": True},
                        {"type": "regex", "pattern": "mock_response"}]})
        for attempt in range(2):
            finished_benchmark_run(benchmark, attempt)
    return {"evaluator": evaluator.pk, "dataset": dataset.pk, "benchmark": benchmark.pk}


def finished_run(*, actor: Actor, project: Project, evaluator: Evaluator, conn: LangfuseConnection,
                 traces: list[dict[str, Any]], judge: ModelRoute) -> EvalRun:
    """A run over the seeded traces, as the worker leaves it: scores in the portal and in Langfuse,
    summary, report."""
    now = timezone.now()
    run = evaluators.eval_run_create(project=project, evaluator=evaluator, window_start=now - dt.timedelta(days=7),
                                     window_end=now)
    version = run.evaluator_version
    scores, events = [], []
    for t in traces:
        sid = score_id(version, t["id"])
        comment = ("Directly answers with the place to go." if t["quality"] >= 4 else
                   "Partly answers; misses the concrete step." if t["quality"] == 3 else
                   "Does not answer the question.")
        scores.append(EvalScore(project=project, evaluator_version=version, run=run, trace_id=t["id"],
                                status="scored", value=float(t["quality"]), comment=comment,
                                judge_cost=Decimal("0.00003"), latency_ms=420.0, langfuse_score_id=sid,
                                pushed_at=now, scored_at=now))
        events.append({"type": "score-create", "id": f"{sid}-s", "timestamp": now.isoformat().replace("+00:00", "Z"),
                       "body": {"id": sid, "traceId": t["id"], "name": evaluator.name, "value": float(t["quality"]),
                                "dataType": "NUMERIC", "comment": comment}})
    EvalScore.objects.bulk_create(scores)
    with conn.client() as client:
        client.ingest(events)
    n = len(traces)
    EvalRun.objects.filter(pk=run.pk).update(
        status="succeeded", considered=n, sampled=n, scored=n, processed=n, total=n, judge_cost=Decimal("0.00003") * n,
        started_at=now - dt.timedelta(seconds=42), finished_at=now, duration_ms=42_000)
    run.refresh_from_db()
    summarize(run)
    run.save(update_fields=["mean_score", "distribution"])
    low = {t["question"]: t["id"] for t in traces if t["quality"] <= 2}
    groups = [{**REPORT_GROUPS[0], "trace_ids": [low["Why was my card declined?"]]},
              {**REPORT_GROUPS[1], "trace_ids": [low["How do I export my data?"]]}]
    EvalReport.objects.create(run=run, route=judge, status="succeeded", groups=groups, cost=Decimal("0.0004"),
                              content=render_markdown(REPORT_SUMMARY, groups, conn.trace_url), finished_at=now)
    return run


def finished_benchmark_run(benchmark: Benchmark, attempt: int) -> BenchmarkRun:
    """A benchmark run as the worker leaves it: one answer per item and route (the routes' mock
    answers, scored by the benchmark's real metrics), the matrix, the comparison."""
    now = timezone.now() - dt.timedelta(days=1 - attempt)
    items = list(benchmark.dataset.items.order_by("pk"))
    routes = list(benchmark.routes.order_by("name"))
    run = BenchmarkRun.objects.create(benchmark=benchmark, status="succeeded", total=len(items) * len(routes),
                                      processed=len(items) * len(routes), started_at=now - dt.timedelta(minutes=2),
                                      finished_at=now, langfuse_run_name=f"chat vs fast #{attempt + 1}")
    metrics = parse_specs(benchmark.metrics)
    results = []
    for route in routes:
        deployment = route.deployments.first()
        answer = str(deployment.litellm_params.get("mock_response", "")) if deployment else ""
        for n, item in enumerate(items):
            verdicts = evaluate(metrics, answer, item.expected_output)
            spread = int(hashlib.sha256(f"{route.name}{n}{attempt}".encode()).hexdigest()[:4], 16) % 400
            base = 900 if route.name == "chat" else 350
            results.append(BenchmarkResult(run=run, item=item, route=route, output=answer,
                                           latency_ms=float(base + spread - 60 * attempt),
                                           cost=Decimal("0.00021") if route.name == "chat" else Decimal("0.00006"),
                                           scores={"metrics": verdicts},
                                           passed=all(v for v in verdicts.values() if v is not None)))
    BenchmarkResult.objects.bulk_create(results)
    matrix = build_matrix(setup_of(run), BenchmarkResult.objects.filter(run=run))
    run.matrix = matrix
    run.total_cost = Decimal(str(matrix["total_cost"]))
    run.comparison = compare_with_previous(run)
    run.save(update_fields=["matrix", "total_cost", "comparison"])
    return run


def seed_usage(key: VirtualKey, *, days: int = 30) -> int:
    """`days` days of the demo key's gateway usage (requests on each route, some errors), as the
    usage consumer stores it; returns how many events were new."""
    now = timezone.now()
    prices = {r.name: (float(r.input_cost_per_million or 0), float(r.output_cost_per_million or 0))
              for r in ModelRoute.objects.filter(organization_id=key.organization_id)}
    events = []
    for d in range(days, -1, -1):
        day = (now - dt.timedelta(days=d)).date()
        count = 20 + (d * 7) % 25 + (15 if day.weekday() < 5 else 0)
        for slot in range(count):
            ts = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC) + dt.timedelta(minutes=slot * 23 % 600)
            if ts > now:
                continue
            route = ("chat", "chat", "fast", "code")[slot % 4]
            h = int(hashlib.sha256(f"{day}{slot}".encode()).hexdigest()[:6], 16)
            prompt, completion = 200 + h % 900, 50 + h % 400
            per_input, per_output = prices.get(route, (0.0, 0.0))
            cost = (prompt * per_input + completion * per_output) / 1_000_000
            failed = h % 31 == 0
            events.append({"request_id": f"demo-{day}-{slot}", "ts": ts.timestamp(), "key_id": key.pk,
                           "key_hash": key.key_hash, "org": key.organization_id, "team": key.team_id,
                           "project": key.project_id, "owner": key.owner.email if key.owner else None,
                           "route": route, "group": f"{key.organization.slug}/{route}", "prompt_tokens": prompt,
                           "completion_tokens": 0 if failed else completion,
                           "cost_nano": 0 if failed else int(cost * 1e9),
                           "latency_ms": (300 if route == "fast" else 700) + h % 900,
                           "status": "error" if failed else "success", "status_code": 500 if failed else 200,
                           "error_class": "InternalServerError" if failed else ""})
    return sum(usage.store(events[i:i + 500]) for i in range(0, len(events), 500))
