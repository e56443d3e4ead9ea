"""Gateway benchmark: one run, side by side, on this machine; prints its figures.

1. Throughput and p50/p99 latency of the same mock_response route through bare
   LiteLLM (master key) and through LiteLLM with the portal's plugin (a portal
   key with a budget, so reservation and settlement run), same load generator
   (wrk) and concurrency, rounds alternated.  Targets: added p99 <= 1 ms,
   throughput >= 0.9 of bare.
2. Revocation: time from the revoke API call (HTTP, to the portal's web
   server) to the first 401 on each of two proxies, p50/p99 over 100
   revocations.  Target: p99 <= 100 ms.
3. Usage ingestion into PostgreSQL (stream -> records + rollups).  Target:
   >= 5,000 events/s.
4. Peak memory (VmHWM) of a proxy with the plugin against bare LiteLLM after
   the same load.  Target: <= 1.1x.

Usage: `make bench` (or `python bench/gateway_bench.py --quick`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from tests.e2e.procs import LOGS, Gateway, Proc, RedisServer, free_port, http_ok, portal_env, wait_for  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"model": "%(model)s", "messages": [{"role": "user", "content": "Say hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def setup_django(redis_url: str) -> None:
    os.environ["REDIS_URL"] = redis_url
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "portal_bench"], capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "portal_bench"], capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def seed() -> dict[str, Any]:
    from gateway.services import keys, routes
    from portal import services
    from portal.access import system_actor

    org, token = services.bootstrap_organization(slug="bench", owner_email="owner@bench.test")
    actor = system_actor(org, "bench")
    team = services.team_create(actor=actor, data={"name": "load"})
    project = services.project_create(actor=actor, data={"name": "load", "team": team})
    routes.route_create(actor=actor, data={"name": "chat", "deployments": [
        {"credential": None, "model": "gpt-4o-mini", "litellm_params": {"mock_response": "ok"}}]})
    key = keys.key_create(actor=actor, data={"name": "load", "team": team, "project": project,
                                             "max_budget": 1_000_000, "budget_period": "monthly"})
    return {"org": org, "team": team, "project": project, "token": token, "key": key.plaintext}


def bare_litellm(directory: Path, env: dict[str, str]) -> Proc:
    import yaml

    port = free_port()
    config = {"model_list": [{"model_name": "bench/chat", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "mock", "mock_response": "ok"}}],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}
    path = directory / "bare.yaml"
    path.write_text(yaml.safe_dump(config))
    litellm = str(Path(sys.executable).parent / "litellm")
    bare_env = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "DJANGO_SECRET_KEY", "PORTAL_ENCRYPTION_KEYS")}
    proc = Proc(f"bare-{port}", [litellm, "--config", str(path), "--port", str(port), "--num_workers", "1"],
                {**bare_env, "LITELLM_MASTER_KEY": "sk-bench-master-key-0123456789abcdef"})
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return proc


def wrk(url: str, key: str, model: str, seconds: int, connections: int, directory: Path) -> dict[str, float]:
    script = directory / f"wrk-{uuid.uuid4().hex}.lua"
    script.write_text(WRK_SCRIPT % {"model": model, "key": key})
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
                          f"{url}/v1/chat/completions"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    requests, duration_us, p50_us, p99_us, errors = map(int, line.split()[1:])
    return {"rps": requests / (duration_us / 1e6), "p50_ms": p50_us / 1000, "p99_ms": p99_us / 1000,
            "errors": errors, "requests": requests}


def peak_rss_mb(pid: int) -> float:
    """VmHWM of the process and its children, in MB."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                    text=True).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


MASTER = "sk-bench-master-key-0123456789abcdef"


def bench_proxies(bare: Proc, plugin: Gateway, key: str, rounds: int, seconds: int, connections: int,
                  directory: Path) -> dict[str, Any]:
    """Latency with one request at a time (the overhead itself, no queueing)
    and throughput with `connections` at once (the proxy saturated); the two
    proxies alternate within each round, medians over rounds."""
    targets = {"bare": (bare.url, MASTER, "bench/chat"), "plugin": (plugin.url, key, "chat")}  # type: ignore[attr-defined]
    for url, secret, model in targets.values():  # warm-up: caches, pools, the model cost map
        wrk(url, secret, model, 3, connections, directory)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {"latency": [], "load": []} for n in targets}
    for _ in range(rounds):
        for name, (url, secret, model) in targets.items():
            runs[name]["latency"].append(wrk(url, secret, model, seconds, 1, directory))
        for name, (url, secret, model) in targets.items():
            runs[name]["load"].append(wrk(url, secret, model, seconds, connections, directory))
    summary: dict[str, Any] = {}
    for name, kinds in runs.items():
        lat, load = kinds["latency"], kinds["load"]
        summary[name] = {"p50_ms": statistics.median(r["p50_ms"] for r in lat),
                         "p99_ms": statistics.median(r["p99_ms"] for r in lat),
                         "rps": statistics.median(r["rps"] for r in load),
                         "load_p50_ms": statistics.median(r["p50_ms"] for r in load),
                         "load_p99_ms": statistics.median(r["p99_ms"] for r in load),
                         "errors": sum(r["errors"] for r in lat + load),
                         "requests": sum(r["requests"] for r in lat + load)}
    return summary


def poll_until_401(c: Any, headers: dict[str, str], name: str, t0_box: list[float], seen: dict[str, float],
                   stop: threading.Event, poll_s: float = 0.002) -> None:
    """Ask one proxy as fast as it answers until the key is refused; note when."""
    while not stop.is_set():
        if c.get("/v1/models", headers=headers).status_code == 401 and t0_box:
            seen.setdefault(name, time.perf_counter() - t0_box[0])
            return
        time.sleep(poll_s)  # leave the machine's two cores some room for the portal itself


def bench_revocation(web_url: str, gateways: list[Gateway], token: str, team: Any, project: Any,
                     n: int, poll_s: float = 0.002) -> dict[str, list[float]]:
    import httpx

    api = httpx.Client(base_url=f"{web_url}/api/v1/orgs/bench/", headers={"Authorization": f"Bearer {token}"},
                       timeout=30)
    clients = [httpx.Client(base_url=gw.url, timeout=10) for gw in gateways]
    times: dict[str, list[float]] = {gw.name: [] for gw in gateways}
    warm_up = 4  # every web worker's first requests pay for lazy imports and URL resolution
    for i in range(n + warm_up):
        created = api.post("keys/", json={"name": "revoke-me", "team": team.pk, "project": project.pk}).json()
        headers = {"Authorization": f"Bearer {created['key']}"}
        for c in clients:
            assert c.get("/v1/models", headers=headers).status_code == 200  # cached in every proxy
        seen: dict[str, float] = {}
        stop = threading.Event()
        t0_box: list[float] = []
        pollers = [threading.Thread(target=poll_until_401, args=(c, headers, gw.name, t0_box, seen, stop, poll_s))
                   for c, gw in zip(clients, gateways, strict=True)]
        for p in pollers:
            p.start()
        t0_box.append(time.perf_counter())
        assert api.post(f"keys/{created['id']}/revoke/").status_code == 200
        times.setdefault("api", []).append((time.perf_counter() - t0_box[0]) * 1000)
        deadline = time.perf_counter() + 5
        while len(seen) < len(gateways) and time.perf_counter() < deadline:
            time.sleep(0.0005)
        stop.set()
        for p in pollers:
            p.join()
        if i < warm_up:
            times.pop("api", None)
            continue
        for gw in gateways:
            times[gw.name].append(seen.get(gw.name, float("inf")) * 1000)
    return times


def bench_ingestion(redis_url: str, org: Any, team: Any, project: Any, n: int) -> float:
    import redis
    from django.db import connection

    from gateway import usage
    from gateway.models import UsageRecord, VirtualKey
    from gateway.plugin import contract

    key = VirtualKey.objects.filter(organization=org).first()
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.delete(contract.USAGE_STREAM)
    usage.ensure_groups(r)
    now = time.time()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        event = {"request_id": uuid.uuid4().hex, "ts": now, "key_id": key.pk, "key_hash": key.key_hash,
                 "org": org.pk, "team": team.pk, "project": project.pk, "owner": None, "route": f"r{i % 5}",
                 "group": "bench/chat", "deployment": "dep", "provider_model": "gpt-4o-mini", "prompt_tokens": 10,
                 "completion_tokens": 20, "cost_nano": 13500, "latency_ms": 5.0, "status": "success",
                 "status_code": 200, "error_class": "", "trace_id": uuid.uuid4().hex}
        pipe.xadd(contract.USAGE_STREAM, {"event": json.dumps(event)})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    before = UsageRecord.objects.count()
    connection.ensure_connection()
    t0 = time.perf_counter()
    stored = usage.drain(r, consumer="bench")
    elapsed = time.perf_counter() - t0
    assert stored == n and UsageRecord.objects.count() - before == n
    return n / elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="Shorter runs (for a smoke check).")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    rounds, seconds, revocations, events = (2, 5, 20, 20_000) if args.quick else (3, 15, 100, 100_000)
    ensure_wrk()
    directory = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    (directory / "redis").mkdir()
    server = RedisServer(directory / "redis").start()
    procs: list[Proc] = [server]
    try:
        setup_django(server.url)
        data = seed()
        from django.conf import settings as dj

        env = portal_env(server.url, dj.DATABASES["default"] and os.environ["DATABASE_URL"])
        bare = bare_litellm(directory, env).start()
        plugin = Gateway(env, directory / "gw1").start()
        second = Gateway(env, directory / "gw2").start()
        web_port = free_port()
        web = Proc(f"web-{web_port}", [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b",
                                        f"127.0.0.1:{web_port}", "-w", "2"], env).start()
        procs += [bare, plugin, second, web]
        wait_for(lambda: http_ok(f"{bare.url}/health/liveliness"), 180, "bare litellm", bare.p)  # type: ignore[attr-defined]
        plugin.wait_ready()
        second.wait_ready()
        wait_for(lambda: http_ok(f"http://127.0.0.1:{web_port}/login/"), 60, "web", web.p)
        print(f"logs: {LOGS}", flush=True)

        print(f"\n[1/4] proxy overhead: wrk, 1 and {args.connections} connections, {rounds} rounds x {seconds} s each")
        load = bench_proxies(bare, plugin, data["key"], rounds, seconds, args.connections, directory)
        mem = {"bare": peak_rss_mb(bare.p.pid), "plugin": peak_rss_mb(plugin.p.pid)}  # type: ignore[union-attr]

        print(f"[2/4] revocation: {revocations} keys, each revoked through the REST API, two proxies polled")
        revocation = bench_revocation(f"http://127.0.0.1:{web_port}", [plugin, second], data["token"],
                                      data["team"], data["project"], revocations)
        api_ms = revocation.pop("api")

        print(f"[3/4] usage ingestion: {events} events from the stream into PostgreSQL")
        ingestion = bench_ingestion(server.url, data["org"], data["team"], data["project"], events)
        print("[4/4] peak memory (VmHWM) after the same load\n")

        b, p = load["bare"], load["plugin"]
        added_p99 = p["p99_ms"] - b["p99_ms"]
        ratio = p["rps"] / b["rps"]
        all_rev = [t for ts in revocation.values() for t in ts]
        mem_ratio = mem["plugin"] / mem["bare"]
        rows = [
            ("p50 latency bare / plugin, 1 at a time (ms)", f"{b['p50_ms']:.2f} / {p['p50_ms']:.2f}",
             f"added {p['p50_ms'] - b['p50_ms']:+.2f} ms"),
            ("p99 latency bare / plugin, 1 at a time (ms)", f"{b['p99_ms']:.2f} / {p['p99_ms']:.2f}",
             f"added {added_p99:+.2f} ms (target <= 1 ms)"),
            (f"throughput bare, {args.connections} at once (req/s)", f"{b['rps']:.1f}",
             f"p50 {b['load_p50_ms']:.1f} ms, p99 {b['load_p99_ms']:.1f} ms"),
            (f"throughput plugin, {args.connections} at once (req/s)", f"{p['rps']:.1f}",
             f"ratio {ratio:.3f} (target >= 0.9); p50 {p['load_p50_ms']:.1f} ms, p99 {p['load_p99_ms']:.1f} ms"),
            ("errors bare / plugin", f"{b['errors']} / {p['errors']}",
             f"of {b['requests']} / {p['requests']} requests"),
        ]
        rows.append(("revoke API call itself (ms)", f"p50 {pct(api_ms, 50):.1f}  p99 {pct(api_ms, 99):.1f}",
                     "included in the times below"))
        for name, ts in revocation.items():
            rows.append((f"revocation -> 401 on {name} (ms)", f"p50 {pct(ts, 50):.1f}  p99 {pct(ts, 99):.1f}",
                         f"max {max(ts):.1f}"))
        rows += [
            ("revocation, both proxies (ms)", f"p50 {pct(all_rev, 50):.1f}  p99 {pct(all_rev, 99):.1f}",
             "target p99 <= 100 ms"),
            ("usage ingestion (events/s)", f"{ingestion:,.0f}", "target >= 5,000"),
            ("peak memory bare / plugin (MB)", f"{mem['bare']:.0f} / {mem['plugin']:.0f}",
             f"ratio {mem_ratio:.3f} (target <= 1.1)"),
        ]
        width = max(len(r[0]) for r in rows)
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:<24} {note}")
        results = {"load": load, "revocation_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99)}
                                                   for k, v in revocation.items()},
                   "ingestion_events_per_s": ingestion, "peak_memory_mb": mem,
                   "targets_met": {"added_p99_le_1ms": added_p99 <= 1.0, "throughput_ge_0_9": ratio >= 0.9,
                                   "revocation_p99_le_100ms": pct(all_rev, 99) <= 100,
                                   "ingestion_ge_5000": ingestion >= 5000, "memory_le_1_1": mem_ratio <= 1.1}}
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "gateway.json").write_text(json.dumps(results, indent=2))
        print(f"\ntargets met: {results['targets_met']}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
