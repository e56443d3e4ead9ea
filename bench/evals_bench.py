"""Evaluation benchmark: one run, side by side, on this machine; prints its figures.

1. Judgments per second of an evaluation run (`evals/services/runs.py`'s
   `EvaluationRun`, as the worker runs it) at concurrency C = 4, 8, 16: traces from a
   Langfuse stand-in, a stand-in judge (`tests/llm_standin.py`) answering
   after a fixed 200 ms, scores written back to the stand-in. Reported as a
   ratio of the ideal C / 0.2 s.  Target: >= 0.8. Measured twice: with the
   judge called straight (the evaluation engine alone), and with the judge
   route served through the real LiteLLM proxy with the portal's plugin.
2. Paging through 100,000 traces of the Langfuse stand-in with
   `LangfuseClient.traces()` (what every evaluation run does first).

Beside the runner, the same judge calls straight through the gateway at the
same concurrency (with and without the project's Langfuse logging) show the
ceiling the proxy sets on this machine, so that the runner's own overhead
(runner / gateway alone) is read apart from the gateway's.

The stand-ins run in processes of their own, so that they do not share the
runner's interpreter lock. Its own Redis and PostgreSQL database
(`portal_evalbench`). Usage: `python bench/evals_bench.py [--quick]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_evalbench")
# the stand-in judge and Langfuse listen on loopback, which the outbound URL policy refuses otherwise
os.environ.setdefault("PORTAL_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128,localhost")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # not a line per HTTP request in the figures

from tests.e2e.procs import LOGS, Gateway, Proc, RedisServer, portal_env  # noqa: E402

JUDGE_LATENCY = 0.2
JUDGE_ANSWER = '{"reasoning": "clear and complete", "score": 4}'
DATABASE = "portal_evalbench"


# The stand-ins, each in a process of its own ---------------------------------


def serve_langfuse(conn: Connection, seeds: dict[str, int]) -> None:
    """A Langfuse stand-in with a project per seed (id -> traces in the last hour)."""
    from tests.langfuse_standin import LangfuseStandin

    server = LangfuseStandin(version=4).start()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for project, n in seeds.items():
        server.add_project(project, project, f"pk-{project}", f"sk-{project}")
        if n:
            server.seed_traces(project, n, start=start, interval=dt.timedelta(seconds=3600 / max(n, 1) * 0.9),
                               name="support-chat")
    conn.send(server.url)
    conn.recv()  # until told to stop
    conn.send(list(server.violations))
    server.stop()


def serve_judge(conn: Connection, latency: float) -> None:
    """An OpenAI-compatible judge that answers after a fixed latency."""
    from tests.llm_standin import LLMStandin

    server = LLMStandin(lambda body: JUDGE_ANSWER, latency=latency)
    # Headers and body in one write, without Nagle: otherwise delayed ACKs add ~40 ms to every
    # keep-alive answer, and the latency is not the 200 ms this measures against.
    server.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    server.server.RequestHandlerClass.wbufsize = 1 << 16  # type: ignore[attr-defined]
    server.start()
    conn.send(server.url)
    conn.recv()
    conn.send(len(server.requests))
    server.stop()


class Child:
    """A stand-in process; `url` once it listens."""

    def __init__(self, target: Any, *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        if not self.conn.poll(300):
            raise TimeoutError(f"{target.__name__} did not start")
        self.url: str = self.conn.recv()

    def stop(self) -> Any:
        if not self.process.is_alive():
            return None
        self.conn.send("stop")
        last = self.conn.recv() if self.conn.poll(30) else None
        self.process.join(10)
        return last


# The portal ------------------------------------------------------------------


def setup_django(redis_url: str) -> None:
    os.environ["REDIS_URL"] = redis_url
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DATABASE], capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def seed(langfuse_url: str, judge_url: str, projects: list[str]) -> dict[str, Any]:
    """An organization with a project per concurrency level, each connected to
    its Langfuse stand-in project, and one evaluator per project on the judge route."""
    from evals.models import Evaluator
    from evals.services import evaluators, langfuse
    from gateway.services import credentials, routes
    from portal import services
    from portal.access import system_actor

    org, _ = services.bootstrap_organization(slug="evalbench", owner_email="owner@evalbench.test")
    actor = system_actor(org, "bench")
    team = services.team_create(actor=actor, data={"name": "evals"})
    cred = credentials.credential_create(actor=actor, name="judge-sim", provider="openai_compatible",
                                         settings={"api_base": f"{judge_url}/v1"})
    route = routes.route_create(actor=actor, data={"name": "judge", "deployments": [
        {"credential": cred, "model": "judge-sim"}]})
    out: dict[str, Any] = {}
    for name in projects:
        project = services.project_create(actor=actor, data={"name": name, "team": team})
        if name == "no-langfuse":  # its calls are not traced: what Langfuse logging costs the gateway
            out[name] = {"project": project}
            continue
        langfuse.connection_save(actor=actor, project=project, host=langfuse_url, public_key=f"pk-{name}",
                                 secret_key=f"sk-{name}")
        evaluator = evaluators.evaluator_create(actor=actor, project=project, data={
            "name": "helpfulness", "template": "helpfulness", "judge_route": route})
        out[name] = {"project": project, "evaluator": Evaluator.objects.get(pk=evaluator.pk), "actor": actor}
    return out


def evaluate(entry: dict[str, Any], concurrency: int, traces: int) -> dict[str, float]:
    """One evaluation run over the project's traces, as the worker executes it."""
    from evals.models import EvalRun
    from evals.services import evaluators, runs

    schedule = evaluators.schedule_save(actor=entry["actor"], project=entry["project"], data={
        "name": f"c{concurrency}-{time.monotonic_ns()}", "evaluator": entry["evaluator"], "interval_seconds": 3600,
        "concurrency": concurrency, "max_traces": traces, "initial_lookback_hours": 2, "enabled": False})
    run = evaluators.eval_run_create(project=entry["project"], evaluator=entry["evaluator"], schedule=schedule)
    started = time.perf_counter()
    runs.eval_run_execute(run.pk)
    elapsed = time.perf_counter() - started
    run = EvalRun.objects.get(pk=run.pk)
    if run.status != "succeeded" or run.scored != traces:
        raise RuntimeError(f"run {run.pk}: {run.status}, {run.scored} of {traces} scored, {run.stop_reason}")
    return {"judgments": run.scored, "seconds": elapsed, "per_second": run.scored / elapsed}


def direct_calls(entry: dict[str, Any], concurrency: int, calls: int) -> dict[str, float]:
    """The same judge calls straight through the gateway, `concurrency` at a time, no runner: the
    ceiling the proxy and the judge set on this machine."""
    from concurrent.futures import ThreadPoolExecutor

    from evals.gateway_client import GatewayClient
    from evals.judge import ScoreSpec, request_params
    from evals.service_keys import service_key

    client = GatewayClient(service_key(entry["project"]))
    params = request_params(ScoreSpec("numeric", 1, 5, pass_threshold=4), "json_schema")

    def one(i: int) -> None:
        client.chat("judge", [{"role": "user", "content": f"Grade answer {i}"}], max_tokens=512, temperature=0,
                    **params)

    def timed(i: int) -> float:
        started = time.perf_counter()
        one(i)
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(timed, range(calls)))
    elapsed = time.perf_counter() - started
    return {"calls": calls, "seconds": elapsed, "per_second": calls / elapsed,
            "p50_ms": statistics.median(latencies)}


def page_traces(url: str, project: str, limit: int) -> dict[str, float]:
    from evals.langfuse_client import LangfuseClient

    with LangfuseClient(url, f"pk-{project}", f"sk-{project}", timeout=60) as client:
        started = time.perf_counter()
        count = sum(1 for _ in client.traces(limit=limit))
        elapsed = time.perf_counter() - started
    return {"traces": count, "seconds": elapsed, "per_second": count / elapsed, "pages": -(-count // limit)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="Fewer judgments and traces (a smoke check).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--gateway-workers", type=int, default=2,
                        help="LiteLLM worker processes of the gateway (one per core, as deployed).")
    args = parser.parse_args()
    rounds, per_slot, paged = (1, 10, 20_000) if args.quick else (2, 30, 100_000)
    levels = args.concurrency
    # each run judges `per_slot` rounds of C calls: about per_slot x 0.2 s at the ideal rate
    plan = {f"c{c}-r{r}": c * per_slot for c in levels for r in range(rounds)}
    plan |= {f"d{c}-r{r}": c * per_slot for c in levels for r in range(rounds)}  # the judge without the gateway
    plan["warmup"] = 16

    directory = Path(tempfile.mkdtemp(prefix="portal-evalbench-"))
    (directory / "redis").mkdir()
    server = RedisServer(directory / "redis").start()
    procs: list[Proc] = [server]
    children: list[Child] = []
    try:
        judge = Child(serve_judge, JUDGE_LATENCY)
        lf = Child(serve_langfuse, plan)
        children += [judge, lf]
        setup_django(server.url)
        from django.conf import settings as dj

        data = seed(lf.url, judge.url, [*plan, "no-langfuse"])
        env = portal_env(server.url, os.environ["DATABASE_URL"])
        gateway = Gateway(env, directory / "gw")
        gateway.argv += ["--workers", str(args.gateway_workers)]
        gateway.start()
        procs.append(gateway)
        gateway.wait_ready()
        dj.GATEWAY_INTERNAL_URL = gateway.url
        print(f"logs: {LOGS}", flush=True)

        print(f"\n[1/2] evaluation runs, judge at {JUDGE_LATENCY * 1000:.0f} ms, concurrency {levels}, "
              f"{rounds} round(s), levels alternated; gateway with {args.gateway_workers} worker(s)", flush=True)
        evaluate(data["warmup"], 4, plan["warmup"])
        single = direct_calls(data["warmup"], 1, 20)
        measured: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
        engine: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
        ceiling: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
        no_langfuse: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
        for r in range(rounds):
            for c in levels:
                dj.GATEWAY_INTERNAL_URL = judge.url  # the stand-in judge straight: the engine alone
                engine[c].append(evaluate(data[f"d{c}-r{r}"], c, plan[f"d{c}-r{r}"]))
                dj.GATEWAY_INTERNAL_URL = gateway.url
                result = evaluate(data[f"c{c}-r{r}"], c, plan[f"c{c}-r{r}"])
                measured[c].append(result)
                direct = direct_calls(data["warmup"], c, plan[f"c{c}-r{r}"])
                ceiling[c].append(direct)
                untraced = direct_calls(data["no-langfuse"], c, plan[f"c{c}-r{r}"])
                no_langfuse[c].append(untraced)
                print(f"  C={c:<3} engine: {engine[c][-1]['seconds']:.2f} s; "
                      f"runner: {result['judgments']:>4} judgments in {result['seconds']:.2f} s; "
                      f"gateway alone: {direct['calls']} calls in {direct['seconds']:.2f} s, "
                      f"untraced in {untraced['seconds']:.2f} s", flush=True)

        print(f"[2/2] paging {paged:,} traces from the Langfuse stand-in\n", flush=True)
        pager = Child(serve_langfuse, {"paging": paged})
        children.append(pager)
        paging = {limit: page_traces(pager.url, "paging", limit) for limit in (100,)}

        rows = [("one judge call at a time (ms)", f"p50 {single['p50_ms']:.0f}",
                 f"the judge's {JUDGE_LATENCY * 1000:.0f} ms + gateway and client")]
        summary: dict[str, Any] = {"judgments": {}, "paging": {}, "single_call": single}
        for c in levels:
            ideal = c / JUDGE_LATENCY
            direct_rate = statistics.median(x["per_second"] for x in engine[c])
            summary.setdefault("engine", {})[c] = {"per_second": direct_rate, "ratio": direct_rate / ideal,
                                                   "runs": engine[c]}
            rows.append((f"judgments/s at C={c}, stand-in judge", f"{direct_rate:.1f} of ideal {ideal:.0f}",
                         f"ratio {direct_rate / ideal:.3f} (target >= 0.8)"))
            rate = statistics.median(x["per_second"] for x in measured[c])
            alone = statistics.median(x["per_second"] for x in ceiling[c])
            summary["judgments"][c] = {"per_second": rate, "ideal_per_second": ideal, "ratio": rate / ideal,
                                       "gateway_alone_per_second": alone, "runs": measured[c],
                                       "gateway_alone": ceiling[c]}
            rows.append(("  the same through the gateway", f"{rate:.1f} of ideal {ideal:.0f}",
                         f"ratio {rate / ideal:.3f}"))
            p50 = statistics.median(x["p50_ms"] for x in ceiling[c])
            rows.append((f"  gateway alone at C={c} (calls/s)", f"{alone:.1f}, p50 {p50:.0f} ms",
                         f"ratio {alone / ideal:.3f}; runner / gateway alone {rate / alone:.3f}"))
            untraced = statistics.median(x["per_second"] for x in no_langfuse[c])
            summary["judgments"][c] |= {"gateway_untraced_per_second": untraced, "gateway_untraced": no_langfuse[c]}
            rows.append((f"  gateway, no Langfuse logging, C={c}", f"{untraced:.1f}",
                         f"ratio {untraced / ideal:.3f}"))
        for limit, p in paging.items():
            summary["paging"][limit] = p
            rows.append((f"page {p['traces']:,} traces, limit {limit}", f"{p['seconds']:.2f} s",
                         f"{p['per_second']:,.0f} traces/s, {p['pages']:,.0f} pages, "
                         f"{p['seconds'] / p['pages'] * 1000:.1f} ms a page"))
        width = max(len(r[0]) for r in rows)
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:<22} {note}")
        violations = lf.stop(), pager.stop()
        judge_calls = judge.stop()
        summary["judge_calls"] = judge_calls
        summary["langfuse_violations"] = [v for vs in violations for v in (vs or [])]
        summary["targets_met"] = {f"ratio_ge_0_8_at_c{c}": summary["engine"][c]["ratio"] >= 0.8 for c in levels}
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "evals.json").write_text(json.dumps(summary, indent=2))
        print(f"\njudge calls served: {judge_calls}; Langfuse spec violations: {summary['langfuse_violations']}")
        print(f"targets met: {summary['targets_met']}")
    finally:
        for child in children:
            child.stop()
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
