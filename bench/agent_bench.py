"""Evaluation agent quality benchmark: plants known failure patterns in a
Langfuse project and reports how many the agent finds and how precise its
evidence is. A script, not a test; prints its figures.

1. A few hundred traces of a support assistant (`bench/agent_plant.py`) reach a
   Langfuse stand-in (tests/langfuse_standin, in a process of its own) through
   its batch ingestion API, with evaluator scores, and the portal gets the
   usage records of the same requests (through the usage consumer's own
   `store`). Three patterns are planted among normal traffic and decoys: answers
   in the wrong language on one route, a tool that fails on long inputs, and
   refusals on one topic.
2. The evaluation agent investigates the project as the portal runs it:
   `evals.agent.services.report_create` queues the job, a real Celery worker
   runs the loop, every model call goes through a real LiteLLM proxy with the
   portal's plugin, on the service key of the project (`--in-process` runs
   `evals.agent.loop.investigate` in this process instead of the worker).
3. It prints the patterns the agent found (a finding matches a pattern when
   more than half of the traces it cites are that pattern's), the precision of
   its cited traces (those that belong to the pattern matched / all cited, over
   the kept findings), the findings the evidence check dropped and why, the
   steps, tokens, spend and wall time.

The model route: by default a scripted investigator (`bench/agent_investigator.py`
behind an OpenAI-compatible stand-in, tests/llm_standin.py) that calls the tools
a careful analyst would and records findings from what they returned, plus one
finding with a fabricated trace id and one that overclaims its count, which the
evidence check must drop. With the stand-in the figures measure the mechanics
(tools, loop, evidence check), not a model's judgement. A real model:
`--route-provider openai_compatible --api-base https://... --model NAME --api-key-env VAR`
(or `--route-provider openai --model gpt-4o-mini --api-key-env OPENAI_API_KEY`).

Its own Redis and PostgreSQL database (`portal_agentbench`).
Usage: `python bench/agent_bench.py [--traces 300] [--in-process] [route options]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=")
DATABASE = "portal_agentbench"
# always its own database, which it drops and creates: never one a DATABASE_URL of the shell names
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
# the stand-ins listen on loopback, which the outbound URL policy refuses otherwise
os.environ.setdefault("PORTAL_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128,localhost")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from bench import agent_plant  # noqa: E402
from bench.evals_bench import Child  # noqa: E402
from tests.e2e.procs import LOGS, Gateway, Proc, RedisServer, Worker, portal_env, wait_for  # noqa: E402

LF_PROJECT, LF_PUBLIC, LF_SECRET = "agentbench", "pk-lf-agentbench", "sk-lf-agentbench"
STANDIN_NOTE = ("The model is the scripted stand-in (bench/agent_investigator.py): these figures measure the "
                "mechanics only (tools, loop, evidence check), not a model's judgement. Give a real route "
                "(--route-provider/--model/--api-key-env) to measure a model.")


def serve_langfuse(conn: Any) -> None:
    """The Langfuse stand-in, in a process of its own; seeded by the bench through its API."""
    from tests.langfuse_standin import LangfuseStandin

    server = LangfuseStandin(version=4).start()
    server.add_project(LF_PROJECT, "agent bench", LF_PUBLIC, LF_SECRET)
    conn.send(server.url)
    conn.recv()
    conn.send(list(server.violations))
    server.stop()


def setup_django(redis_url: str, broker_url: str) -> None:
    os.environ["REDIS_URL"] = redis_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DATABASE], capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def route_settings(args: argparse.Namespace, standin_url: str | None) -> tuple[str, dict[str, Any], dict[str, Any],
                                                                                  str]:
    """(provider, credential settings, secrets, provider model) of the investigator's route."""
    if standin_url:
        return "openai_compatible", {"api_base": f"{standin_url}/v1"}, {}, "investigator-standin"
    secrets: dict[str, Any] = {}
    if args.api_key_env:
        value = os.environ.get(args.api_key_env)
        if not value:
            raise SystemExit(f"--api-key-env {args.api_key_env}: the variable is not set")
        secrets["api_key"] = value
    settings = {"api_base": args.api_base} if args.api_base else {}
    return args.route_provider, settings, secrets, args.model


def seed(args: argparse.Namespace, langfuse_url: str, standin_url: str | None) -> dict[str, Any]:
    """An organization, a team and project connected to the Langfuse stand-in project, the investigator's
    route, and the application's key (whose usage records are planted)."""
    from evals.services import evaluators, langfuse
    from gateway.services import credentials, keys, routes
    from portal import services
    from portal.access import system_actor

    org, _ = services.bootstrap_organization(slug="agentbench", owner_email="owner@agentbench.test")
    actor = system_actor(org, "agent bench")
    team = services.team_create(actor=actor, data={"name": "support"})
    project = services.project_create(actor=actor, data={"name": "support-assistant", "team": team})
    langfuse.connection_save(actor=actor, project=project, host=langfuse_url, public_key=LF_PUBLIC,
                             secret_key=LF_SECRET)
    provider, settings, secrets, model = route_settings(args, standin_url)
    cred = credentials.credential_create(actor=actor, name="investigator", provider=provider, settings=settings,
                                         secrets=secrets)
    pricing = {k: Decimal(str(v)) for k, v in (("input_cost_per_million", args.input_cost_per_million),
                                 ("output_cost_per_million", args.output_cost_per_million)) if v is not None}
    route = routes.route_create(actor=actor, data={"name": "investigator", "timeout_seconds": 120, **pricing,
                                                   "deployments": [{"credential": cred, "model": model}]})
    app_key = keys.key_create(actor=actor, data={"name": "support app", "team": team, "project": project})
    judge = routes.route_create(actor=actor, data={"name": "judge", "deployments": [
        {"credential": None, "model": "gpt-4o-mini", "litellm_params": {"mock_response": '{"score": 4}'}}]})
    helpfulness = evaluators.evaluator_create(actor=actor, project=project, data={
        "name": "helpfulness", "template": "helpfulness", "judge_route": judge})
    language = evaluators.evaluator_create(actor=actor, project=project, data={
        "name": "language_match", "judge_route": judge, "score_type": "numeric", "min_value": 0, "max_value": 1,
        "pass_threshold": 1, "prompt_template": "Question:\n{{input}}\n\nAnswer:\n{{output}}\n\n"
                                                "1 if the answer is in the question's language, else 0."})
    return {"org": org, "actor": actor, "team": team, "project": project, "route": route, "app_key": app_key.key,
            "evaluators": {"helpfulness": helpfulness, "language_match": language}}


def plant(planted: agent_plant.Plan, langfuse_url: str, data: dict[str, Any]) -> dict[str, int]:
    from gateway import usage

    events = agent_plant.ingest(langfuse_url, LF_PUBLIC, LF_SECRET, planted)
    org, project, key = data["org"], data["project"], data["app_key"]
    records = usage.store(agent_plant.usage_events(
        planted, org=org.pk, team=data["team"].pk, project=project.pk, key_id=key.pk, owner="",
        org_slug=org.slug))
    return {"ingestion_events": events, "usage_records": records, "scores": plant_scores(planted, data)}


def plant_scores(planted: agent_plant.Plan, data: dict[str, Any]) -> int:
    """The portal's evaluation scores of the planted traces, as one finished run of each evaluator wrote
    them (the same values went to Langfuse with the traces)."""
    from evals.models import EvalRun, EvalScore, RunStatus, ScoreStatus

    first, last = planted.traces[0].timestamp, planted.traces[-1].timestamp
    written = 0
    for name, evaluator in data["evaluators"].items():
        version = evaluator.current
        values = [getattr(t, name) for t in planted.traces]
        run = EvalRun.objects.create(
            project=data["project"], evaluator_version=version, status=RunStatus.SUCCEEDED, window_start=first,
            window_end=last, considered=len(values), sampled=len(values), scored=len(values),
            processed=len(values), total=len(values), mean_score=sum(values) / len(values),
            started_at=last, finished_at=last)
        written += len(EvalScore.objects.bulk_create([
            EvalScore(project=data["project"], evaluator_version=version, trace_id=t.id, run=run,
                      status=ScoreStatus.SCORED, value=getattr(t, name), scored_at=t.timestamp,
                      latency_ms=400.0) for t in planted.traces]))
    return written


def investigate(args: argparse.Namespace, data: dict[str, Any], window: tuple[dt.datetime, dt.datetime]) -> Any:
    """One investigation, as the portal runs it; returns the finished report."""
    from django.db import transaction

    from evals.agent import services as agent_services
    from evals.agent.models import AgentReport

    bounds = {"max_steps": args.max_steps, "max_tokens": args.max_tokens, "max_seconds": args.max_seconds,
              "max_spend": Decimal(str(args.max_spend))}
    with transaction.atomic():
        report = agent_services.report_create(actor=data["actor"], project=data["project"], route=data["route"],
                                              focus=args.focus, window_start=window[0], window_end=window[1],
                                              **bounds)
    if args.in_process:
        from evals.agent import loop

        loop.investigate(report.pk)
    deadline = time.monotonic() + args.max_seconds + 120
    while time.monotonic() < deadline:
        report = AgentReport.objects.get(pk=report.pk)
        if report.status not in ("queued", "running"):
            return report
        time.sleep(0.5)
    raise TimeoutError(f"report {report.pk} still {report.status} after {args.max_seconds + 120} s")


def follow_up(args: argparse.Namespace, data: dict[str, Any], report: Any) -> Any:
    """A follow-up question on the finished report (`message_create`, then the worker's answer)."""
    from django.db import transaction

    from evals.agent import services as agent_services
    from evals.agent.models import AgentMessage

    with transaction.atomic():
        message = agent_services.message_create(actor=data["actor"], report=report, content=args.question)
    if args.in_process:
        from evals.agent import loop

        loop.answer(message.pk)
    deadline = time.monotonic() + args.max_seconds + 120
    while time.monotonic() < deadline:
        message = AgentMessage.objects.get(pk=message.pk)
        if message.status not in ("queued", "running"):
            return message
        time.sleep(0.5)
    raise TimeoutError(f"answer {message.pk} still {message.status}")


def show_answer(args: argparse.Namespace, message: Any, planted: agent_plant.Plan, wall: float) -> dict[str, Any]:
    cited = [e["trace_id"] for e in message.evidence or []]
    errors = planted.of("tool_error_long_input")
    print(f"\nfollow-up question: {args.question!r}")
    print(f"answer ({message.status}{', ' + message.stop_reason if message.stop_reason else ''}, {wall:.1f} s): "
          f"{message.content[:300]!r}")
    for s in describe_steps(message.report, message):
        print(f"  step {s['index']:>3} {s['tool']:<16} {json.dumps(s['arguments'], ensure_ascii=False)[:90]}")
    print(f"  evidence kept: {len(cited)} traces ({len(set(cited) & errors)} of them tool_error_long_input "
          f"traces); evidence dropped by the check: {message.evidence_dropped}")
    return {"status": message.status, "content": message.content, "evidence": message.evidence,
            "evidence_dropped": message.evidence_dropped, "cited_in_pattern": len(set(cited) & errors),
            "wall_seconds": wall}


def describe_steps(report: Any, message: Any = None) -> list[dict[str, Any]]:
    out = []
    for step in report.steps.filter(kind="tool", message=message).order_by("index"):
        result = step.result if isinstance(step.result, dict) else {}
        out.append({"index": step.index, "tool": step.tool_name, "arguments": step.arguments,
                    "error": step.error, "matched": result.get("matched"), "traces": len(step.trace_ids or []),
                    "truncated": step.truncated})
    return out


def spend_in_usage(data: dict[str, Any], redis_url: str) -> dict[str, Any]:
    """The agent's calls as the portal's usage shows them (the project's service key)."""
    import redis
    from django.db.models import Count, Sum

    from gateway import usage
    from gateway.models import KeyKind, UsageRecord

    usage.drain(redis.Redis.from_url(redis_url, decode_responses=True))
    rows = UsageRecord.objects.filter(project=data["project"], key__kind=KeyKind.SERVICE).aggregate(
        requests=Count("id"), cost=Sum("cost"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in rows.items()}


def show(planted: agent_plant.Plan, report: Any, steps: list[dict[str, Any]], scored: dict[str, Any],
         wall: float, used: dict[str, Any], standin: bool) -> dict[str, Any]:
    patterns = planted.patterns
    print(f"\nplanted: {len(planted.traces)} traces; patterns: "
          + ", ".join(f"{p} ({len(ids)} traces)" for p, ids in patterns.items())
          + f"; {sum(1 for t in planted.traces if not t.patterns)} normal traces (5 decoys with helpfulness 1)")
    print(f"\nreport {report.pk}: {report.status}" + (f" ({report.stop_reason})" if report.stop_reason else "")
          + (f"; error: {report.error}" if report.error else ""))
    print("tool calls:")
    for s in steps:
        args = json.dumps(s["arguments"], ensure_ascii=False)
        print(f"  step {s['index']:>3} {s['tool']:<16} {args[:90]:<90} "
              + (f"ERROR {s['error'][:80]}" if s["error"] else
                 f"matched={s['matched']} traces={s['traces']}{' truncated' if s['truncated'] else ''}"))
    print("findings kept:")
    for f, m in zip(report.findings.order_by("index"), scored["matches"], strict=True):
        share = f"{f.share:.1%}" if f.share is not None else "?"
        cost = f"${f.cost:.6f}" if f.cost is not None else "?"
        print(f"  [{f.index}] {f.title!r}: count {f.count}, share {share}, cost {cost}, change ({f.change_kind}) "
              f"{f.change[:70]!r}\n       cites {m['cited']} traces -> pattern {m['pattern'] or 'none'} "
              f"({m['correct']} of {m['cited']} belong to it)")
    print(f"findings dropped by the evidence check: {report.findings_dropped}")
    for d in report.dropped or []:
        print(f"  - {d.get('title', '?')!r}: {d.get('reason', d)}")
    precision = f"{scored['precision']:.3f}" if scored["precision"] is not None else "n/a (no trace cited)"
    rows = [
        ("patterns found", f"{scored['found_count']} of {scored['planted']}", ", ".join(scored["found"]) or "none"),
        ("precision of cited traces", precision, f"{scored['correct']} of {scored['cited']} cited traces"),
        ("findings kept / dropped", f"{report.findings.count()} / {report.findings_dropped}", ""),
        ("model turns (steps)", str(report.steps_taken), f"{len(steps)} tool calls"),
        ("tokens", f"{report.tokens_used:,}", ""),
        ("spend (report)", f"${report.cost:.6f}",
         f"usage records of the service key: {used.get('requests')} requests, ${used.get('cost') or 0:.6f}"),
        ("wall time", f"{wall:.1f} s", "report_create to the report's final status"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<22} {note}")
    checks: dict[str, bool] = {}
    if standin:  # what the mechanics must show: each planted pattern found, both bad findings dropped
        titles = {str(d.get("title", "")) for d in report.dropped or []}
        checks = {"all_patterns_found": scored["found_count"] == scored["planted"],
                  "fabricated_trace_id_dropped": "Fabricated evidence (must be dropped)" in titles,
                  "overclaimed_count_dropped": "Overclaimed count (must be dropped)" in titles,
                  "spend_in_usage": abs(float(report.cost) - float(used.get("cost") or 0)) < 1e-6}
    return {"checks": checks, "patterns": {p: len(ids) for p, ids in patterns.items()}, "score": scored, "status": report.status,
            "stop_reason": report.stop_reason, "steps": report.steps_taken, "tool_calls": steps,
            "tokens": report.tokens_used, "cost": float(report.cost), "wall_seconds": wall,
            "findings_dropped": report.findings_dropped, "dropped": report.dropped, "usage": used,
            "standin": standin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=300)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--route-provider", choices=["openai", "anthropic", "azure", "bedrock", "vertex_ai",
                                                     "openai_compatible"],
                        help="A real provider for the agent's route (default: the scripted stand-in).")
    parser.add_argument("--api-base", help="The provider's base URL (openai_compatible: required).")
    parser.add_argument("--model", help="The provider's model name.")
    parser.add_argument("--api-key-env", help="The environment variable holding the provider's API key.")
    parser.add_argument("--input-cost-per-million", type=float, default=None)
    parser.add_argument("--output-cost-per-million", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=400_000)
    parser.add_argument("--max-seconds", type=int, default=600)
    parser.add_argument("--max-spend", type=float, default=1.0)
    parser.add_argument("--focus", default="")
    parser.add_argument("--question", default="Which traces show the tool errors, and how many are there?",
                        help="A follow-up question on the report ('' for none).")
    parser.add_argument("--in-process", action="store_true",
                        help="Run the loop in this process (loop.investigate) instead of a Celery worker.")
    args = parser.parse_args()
    standin = args.route_provider is None
    if not standin and not args.model:
        parser.error("--route-provider needs --model")
    if standin and args.input_cost_per_million is None:  # gpt-4o-mini's prices, so that spend is visible
        args.input_cost_per_million, args.output_cost_per_million = 0.15, 0.60

    directory = Path(tempfile.mkdtemp(prefix="portal-agentbench-"))
    (directory / "redis").mkdir()
    server = RedisServer(directory / "redis", appendfsync="everysec").start()
    procs: list[Proc] = [server]
    lf: Child | None = None
    llm: Any = None
    try:
        lf = Child(serve_langfuse)
        if standin:
            from bench.agent_investigator import Investigator
            from tests.llm_standin import LLMStandin

            llm = LLMStandin(Investigator().answer).start()
        broker = server.url.rsplit("/", 1)[0] + "/1"
        setup_django(server.url, broker)
        from django.conf import settings as dj

        data = seed(args, lf.url, llm.url if llm else None)
        end = dt.datetime.now(dt.UTC).replace(microsecond=0)
        planted = agent_plant.plan(total=args.traces, seed=args.seed, end=end - dt.timedelta(minutes=5))
        counts = plant(planted, lf.url, data)
        mode = "scripted stand-in" if standin else f"{args.route_provider} {args.model}"
        print(f"logs: {LOGS}\nmodel route: {mode}; loop: {'in this process' if args.in_process else 'Celery worker'}"
              f"\nplanted {len(planted.traces)} traces ({counts['ingestion_events']} ingestion events) and "
              f"{counts['usage_records']} usage records, {counts['scores']} evaluation scores", flush=True)
        if standin:
            print(f"NOTE: {STANDIN_NOTE}", flush=True)

        env = portal_env(server.url, os.environ["DATABASE_URL"], CELERY_BROKER_URL=broker, LOG_LEVEL="INFO")
        gateway = Gateway(env, directory / "gw")
        gateway.start()
        procs.append(gateway)
        gateway.wait_ready()
        dj.GATEWAY_INTERNAL_URL = gateway.url
        if not args.in_process:
            worker = Worker(env | {"GATEWAY_INTERNAL_URL": gateway.url}, "agentbench").start()
            procs.append(worker)
            log = LOGS / "worker-agentbench.log"
            wait_for(lambda: "ready." in log.read_text(errors="replace"), 90, "celery worker", worker.p)

        window = (end - dt.timedelta(days=3), end)
        started = time.perf_counter()
        report = investigate(args, data, window)
        wall = time.perf_counter() - started
        findings = [{"title": f.title, "trace_ids": f.trace_ids} for f in report.findings.order_by("index")]
        scored = agent_plant.score(findings, planted.patterns)
        summary = show(planted, report, describe_steps(report), scored, wall, spend_in_usage(data, server.url),
                       standin)
        if args.question and report.status in ("succeeded", "partial"):
            started = time.perf_counter()
            answered = follow_up(args, data, report)
            summary["follow_up"] = show_answer(args, answered, planted, time.perf_counter() - started)
            report.refresh_from_db()
            used = spend_in_usage(data, server.url)
            print(f"spend with the answer: report ${report.cost:.6f} (investigation and answer); usage records of "
                  f"the service key: {used.get('requests')} requests, ${used.get('cost') or 0:.6f}")
            if standin:
                summary["checks"]["answer_fabricated_evidence_dropped"] = \
                    answered.evidence_dropped == 1 and len(answered.evidence) == 3
                summary["checks"]["answer_spend_in_usage"] = \
                    abs(float(report.cost) - float(used.get("cost") or 0)) < 1e-6
        violations = lf.stop() or []
        lf = None
        summary["langfuse_violations"] = violations
        print(f"Langfuse spec violations: {violations}")
        if standin:
            print(f"mechanics checks: {summary['checks']}\n\nNOTE: {STANDIN_NOTE}")
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "agent.json").write_text(json.dumps(summary, indent=2, default=str))
    finally:
        if lf is not None:
            lf.stop()
        if llm is not None:
            llm.stop()
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
