"""The system's real cost: one run, side by side, on this machine; prints its figures.

The system as users run it: bare LiteLLM (master key) against LiteLLM with the
portal's plugin and a portal key under a budget (so every request reserves and
settles), with the usage consumer (a Celery worker on the `usage` queue)
writing every request to PostgreSQL, and the web (gunicorn) serving.

1. Added p50/p99 latency at one connection, throughput at 16 (wrk), bare and
   gateway rounds alternated (the order swapped every round), medians over
   rounds. Targets: added p50 <= 1 ms, throughput >= 0.9 of bare.
2. CPU seconds per 1,000 requests of each process: the proxies, Redis, the
   consumer (the worker's process tree), the PostgreSQL backends of the bench's
   database, the web; and the whole machine's (/proc/stat). A gateway round's
   window runs until the consumer has emptied the usage stream, so the
   consumer's work is counted against the gateway and never runs into a bare
   round.
3. Revocation: time from the revoke API call (HTTP, to gunicorn) to the first
   401 on the proxy, and the API call alone. Target: p99 <= 100 ms. The
   poller asks the proxy every `--poll-ms` (10; each poll is a full LiteLLM
   request, ~20 ms CPU here: at 2 ms it kept one of two cores busy during the
   call it measures); a poll interval adds at most itself to time-to-401, so
   the figure is an upper bound. `--poll-ms 2,10` runs both, interleaved.
   The web keeps its database connection (DATABASE_CONN_MAX_AGE=60, the
   production setting of .env.example) unless --web-conn-max-age says otherwise.
4. Where the time goes: cProfile inside the gateway's worker
   (bench/proxy_profile.py) during a one-connection run: the top entries by
   own time, and the plugin's functions.

Usage: `make bench` (or `python bench/system_bench.py --quick`, ~3 min).
Writes bench/results/system.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE = os.environ.get("BENCH_DATABASE", "portal_bench_e")
# Forced, not defaulted: the bench drops and creates its database, never the one a test run uses.
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ.pop("PORTAL_ENV_FILE", None)

from bench.gateway_bench import MASTER, bare_litellm, bench_revocation, ensure_wrk, pct, seed, wrk  # noqa: E402
from tests.e2e.procs import LOGS, Gateway, Proc, RedisServer, free_port, http_ok, portal_env, wait_for  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# CPU accounting ------------------------------------------------------------------------------

def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_of(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(fields[3]) + int(fields[4])
    return sum(int(f) for f in fields[:8]) - idle


class Meter:
    """CPU ticks of named groups of processes; the PostgreSQL backends are those of the bench's database."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots

    def pg_backends(self) -> list[int]:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc",
                              f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}' "
                              "AND pid <> pg_backend_pid()"], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def sample(self) -> dict[str, dict[int, int]]:
        tree = children_map()
        groups = {name: {p: ticks(p) for p in tree_of(pid, tree)} for name, pid in self.roots.items()}
        groups["postgres"] = {p: ticks(p) for p in self.pg_backends()}
        groups["machine"] = {0: machine_ticks()}
        return groups

    @staticmethod
    def delta(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict[str, float]:
        """CPU seconds of each group between two samples (processes present in both)."""
        return {name: sum(t - before[name].get(p, t) for p, t in pids.items()) / TICK
                for name, pids in after.items()}


def add(total: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


# The run -------------------------------------------------------------------------------------

def setup_django(redis_url: str) -> None:
    os.environ["REDIS_URL"] = redis_url
    os.environ["CELERY_BROKER_URL"] = redis_url
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", DATABASE],
                   capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], capture_output=True, check=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request of the revocation runs


def stream_empty(redis_url: str, timeout: float = 60) -> float:
    """Wait until the consumer has stored (and deleted) every usage event; seconds waited."""
    import redis

    from gateway.plugin import contract

    r = redis.Redis.from_url(redis_url)
    t0 = time.monotonic()
    while r.xlen(contract.USAGE_STREAM) and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return time.monotonic() - t0


def usage_records() -> int:
    from django.db import connection

    from gateway.models import UsageRecord

    count = UsageRecord.objects.count()
    connection.close()
    return count


def run_load(targets: dict[str, tuple[str, str, str]], meter: Meter, redis_url: str, rounds: int, seconds: int,
             connections: int, directory: Path) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {"c1": [], "load": []} for n in targets}
    cpu: dict[str, dict[str, float]] = {n: {} for n in targets}
    served = {n: 0 for n in targets}
    for i in range(rounds):
        order = list(targets) if i % 2 == 0 else list(reversed(targets))
        for kind, conns in (("c1", 1), ("load", connections)):
            for name in order:
                url, secret, model = targets[name]
                before = meter.sample()
                result = wrk(url, secret, model, seconds, conns, directory)
                if name == "gateway":
                    stream_empty(redis_url)  # the consumer's work belongs to the gateway's window
                add(cpu[name], Meter.delta(before, meter.sample()))
                served[name] += int(result["requests"])
                runs[name][kind].append(result)
                print(f"  round {i + 1} {name:<7} {conns:>2} conn: {result['rps']:7.1f} req/s  "
                      f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}",
                      flush=True)
    summary: dict[str, Any] = {}
    for name, kinds in runs.items():
        c1, load = kinds["c1"], kinds["load"]
        summary[name] = {
            "p50_ms": statistics.median(r["p50_ms"] for r in c1), "p99_ms": statistics.median(r["p99_ms"] for r in c1),
            "rps_c1": statistics.median(r["rps"] for r in c1), "rps": statistics.median(r["rps"] for r in load),
            "load_p50_ms": statistics.median(r["p50_ms"] for r in load),
            "load_p99_ms": statistics.median(r["p99_ms"] for r in load),
            "errors": sum(r["errors"] for r in c1 + load), "requests": served[name],
            "cpu_s_per_1000": {k: v * 1000 / served[name] for k, v in cpu[name].items()},
            "rounds": {"c1": c1, "load": load},
        }
    return summary


def profile(gateway: Gateway, key: str, profile_dir: Path, seconds: int, directory: Path) -> dict[str, Any]:
    """cProfile in the gateway's worker during a one-connection run."""
    pids = [int(p.name.split("-")[1]) for p in profile_dir.glob("pid-*")]
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    result = wrk(gateway.url, key, "chat", seconds, 1, directory)
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    files = [profile_dir / f"proxy-{pid}.prof" for pid in pids]
    wait_for(lambda: all(f.exists() for f in files), 30, "profile dump")
    stats = pstats.Stats(*[str(f) for f in files])
    entries = stats.stats  # type: ignore[attr-defined]
    requests = max(1, int(result["requests"]))
    total = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values())

    def row(func: tuple[str, int, str], tt: float, ct: float, nc: int) -> dict[str, Any]:
        filename, line, name = func
        short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        return {"function": f"{short}:{line}({name})", "calls": nc, "own_us_per_request": tt * 1e6 / requests,
                "cumulative_us_per_request": ct * 1e6 / requests}

    by_own = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:25]
    plugin = sorted(((f, v) for f, v in entries.items() if "/gateway/plugin/" in f[0]),
                    key=lambda kv: kv[1][3], reverse=True)[:25]
    plugin_own = sum(v[2] for f, v in entries.items() if "/gateway/plugin/" in f[0])
    keep = os.environ.get("BENCH_KEEP_PROFILE")
    if keep:
        stats.dump_stats(keep)
    return {"requests": requests, "profiled_us_per_request": total * 1e6 / requests,
            "plugin_own_us_per_request": plugin_own * 1e6 / requests,
            "top_own": [row(f, v[2], v[3], v[1]) for f, v in by_own],
            "plugin_cumulative": [row(f, v[2], v[3], v[1]) for f, v in plugin]}


def start(directory: Path, profile_dir: Path, conn_max_age: int) -> tuple[list[Proc], dict[str, Any]]:
    redis_server = RedisServer(directory / "redis", appendfsync="everysec").start()  # as production runs it
    procs: list[Proc] = [redis_server]
    setup_django(redis_server.url)
    data = seed()
    # The consumer as production runs it (portal_env shortens the claim period for the fault tests).
    env = portal_env(redis_server.url, os.environ["DATABASE_URL"], PORTAL_USAGE_CLAIM_IDLE_MS="30000")
    env.pop("PORTAL_ENV_FILE", None)
    bare = bare_litellm(directory, env).start()
    gw_env = {**env, "PORTAL_GATEWAY_BENCH_PROFILE_DIR": str(profile_dir),
              "LITELLM_WORKER_STARTUP_HOOKS": "bench.proxy_profile:install"}
    gateway = Gateway(gw_env, directory / "gw").start()
    web_port = free_port()
    web_env = {**env, "DATABASE_CONN_MAX_AGE": str(conn_max_age)}  # not the tests' 0: production's setting
    web = Proc(f"web-{web_port}", [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{web_port}",
                                    "-w", "2"], web_env).start()
    worker = Proc("worker-bench", [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "sync,usage",
                                   "-c", "2", "--loglevel", "WARNING", "-n", "bench@%h", "--without-gossip",
                                   "--without-mingle"], env).start()
    procs += [bare, gateway, web, worker]
    wait_for(lambda: http_ok(f"{bare.url}/health/liveliness"), 180, "bare litellm", bare.p)  # type: ignore[attr-defined]
    gateway.wait_ready()
    web_url = f"http://127.0.0.1:{web_port}"
    wait_for(lambda: http_ok(f"{web_url}/login/"), 60, "web", web.p)
    data.update(redis=redis_server, bare=bare, gateway=gateway, web=web, worker=worker, web_url=web_url)
    return procs, data


def run_revocation(data: dict[str, Any], gateway: Gateway, meter: Meter, polls: list[float],
                   n: int) -> dict[float, dict[str, Any]]:
    """`n` revocations per poll interval, in two halves interleaved (2, 10, 2, 10 ...), with the CPU
    seconds each process spent per revocation (the poller's load shows on the proxy)."""
    out: dict[float, dict[str, Any]] = {p: {"api": [], "to_401": [], "cpu": {}, "keys": 0} for p in polls}
    for _half in range(2):
        for poll in polls:
            before = meter.sample()
            times = bench_revocation(data["web_url"], [gateway], data["token"], data["team"], data["project"],
                                     n // 2, poll_s=poll / 1000)
            add(out[poll]["cpu"], Meter.delta(before, meter.sample()))
            out[poll]["api"] += times.pop("api")
            out[poll]["to_401"] += [t for ts in times.values() for t in ts]
            out[poll]["keys"] += n // 2 + 4  # bench_revocation's warm-up keys ran too
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="Shorter runs (~3 min).")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-revocation", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--only-revocation", action="store_true", help="Skip the load rounds and the profile.")
    parser.add_argument("--poll-ms", default="10",
                        help="The revocation poller's interval(s), comma-separated (the first decides the target).")
    parser.add_argument("--web-conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE of the web.")
    args = parser.parse_args()
    rounds, seconds, revocations, profile_s = (3, 5, 30, 5) if args.quick else (5, 10, 100, 10)
    rounds, seconds = args.rounds or rounds, args.seconds or seconds
    ensure_wrk()
    directory = Path(tempfile.mkdtemp(prefix="portal-system-bench-"))
    (directory / "redis").mkdir()
    profile_dir = directory / "profile"
    profile_dir.mkdir()
    procs: list[Proc] = []
    try:
        procs, data = start(directory, profile_dir, args.web_conn_max_age)
        print(f"logs: {LOGS}; load average {os.getloadavg()[0]:.2f}", flush=True)
        redis_url = data["redis"].url
        bare, gateway = data["bare"], data["gateway"]
        targets = {"bare": (bare.url, MASTER, "bench/chat"), "gateway": (gateway.url, data["key"], "chat")}
        meter = Meter({"bare proxy": bare.p.pid, "gateway proxy": gateway.p.pid, "redis": data["redis"].p.pid,
                       "consumer (worker)": data["worker"].p.pid, "web (gunicorn)": data["web"].p.pid})
        for url, secret, model in targets.values():  # warm-up: caches, pools, the model cost map, the consumer
            wrk(url, secret, model, 3, args.connections, directory)
        stream_empty(redis_url)
        records_before = usage_records()

        load: dict[str, Any] = {}
        if not args.only_revocation:
            print(f"\n[1/3] load: wrk, 1 and {args.connections} connections, {rounds} rounds x {seconds} s, "
                  "alternated")
            load = run_load(targets, meter, redis_url, rounds, seconds, args.connections, directory)
        stored = usage_records() - records_before

        revocation: dict[float, dict[str, Any]] = {}
        if not args.no_revocation:
            polls = [float(x) for x in args.poll_ms.split(",")]
            print(f"[2/3] revocation: {revocations} keys per poll interval {polls} ms, each revoked through the "
                  f"REST API; web DATABASE_CONN_MAX_AGE={args.web_conn_max_age}", flush=True)
            revocation = run_revocation(data, gateway, meter, polls, revocations)
        prof: dict[str, Any] = {}
        if not args.no_profile and not args.only_revocation:
            print(f"[3/3] profile: cProfile in the gateway's worker, {profile_s} s at 1 connection", flush=True)
            prof = profile(gateway, data["key"], profile_dir, profile_s, directory)
        report(args, load, stored, revocation, prof)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


def report(args: argparse.Namespace, load: dict[str, Any], stored: int, revocation: dict[float, dict[str, Any]],
           prof: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    results: dict[str, Any] = {"load": load, "usage_records_stored": stored, "load_average": os.getloadavg()}
    met: dict[str, bool] = {}
    if load:
        report_load(args, load, stored, rows, met)
    if revocation:
        results["revocation_ms"] = {}
        for i, (poll, r) in enumerate(revocation.items()):
            api_ms, to_401 = r["api"], r["to_401"]
            rows.append((f"revoke API call itself (ms), poll {poll:g} ms",
                         f"p50 {pct(api_ms, 50):.1f}  p99 {pct(api_ms, 99):.1f}", f"max {max(api_ms):.1f}; included below"))
            rows.append((f"revocation -> 401 on the gateway (ms), poll {poll:g} ms",
                         f"p50 {pct(to_401, 50):.1f}  p99 {pct(to_401, 99):.1f}",
                         "target p99 <= 100 ms" + (" (this interval decides)" if i == 0 else "")))
            per_key = {k: v * 1000 / r["keys"] for k, v in r["cpu"].items()}
            rows.append((f"CPU ms per revocation, poll {poll:g} ms", f"proxy {per_key.get('gateway proxy', 0):.1f}  "
                         f"web {per_key.get('web (gunicorn)', 0):.1f}", f"postgres {per_key.get('postgres', 0):.1f}  "
                         f"machine {per_key.get('machine', 0):.1f}"))
            results["revocation_ms"][f"poll_{poll:g}ms"] = {
                "api": {"p50": pct(api_ms, 50), "p99": pct(api_ms, 99)},
                "to_401": {"p50": pct(to_401, 50), "p99": pct(to_401, 99)}, "cpu_ms_per_revocation": per_key}
            if i == 0:
                met["revocation_p99_le_100ms"] = pct(to_401, 99) <= 100
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<22} {note}")
    report_profile(prof, results)
    results["targets_met"] = met
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "system.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\ntargets met: {met}")


def report_load(args: argparse.Namespace, load: dict[str, Any], stored: int, rows: list[tuple[str, str, str]],
                met: dict[str, bool]) -> None:
    b, g = load["bare"], load["gateway"]
    added_p50, added_p99 = g["p50_ms"] - b["p50_ms"], g["p99_ms"] - b["p99_ms"]
    ratio = g["rps"] / b["rps"]
    rows += [
        ("p50 latency bare / gateway, 1 connection (ms)", f"{b['p50_ms']:.2f} / {g['p50_ms']:.2f}",
         f"added {added_p50:+.2f} ms (target <= 1 ms)"),
        ("p99 latency bare / gateway, 1 connection (ms)", f"{b['p99_ms']:.2f} / {g['p99_ms']:.2f}",
         f"added {added_p99:+.2f} ms"),
        (f"throughput bare / gateway, {args.connections} connections (req/s)", f"{b['rps']:.1f} / {g['rps']:.1f}",
         f"ratio {ratio:.3f} (target >= 0.9)"),
        (f"latency at {args.connections} bare / gateway p50, p99 (ms)",
         f"{b['load_p50_ms']:.1f} / {g['load_p50_ms']:.1f}", f"p99 {b['load_p99_ms']:.1f} / {g['load_p99_ms']:.1f}"),
        ("errors bare / gateway", f"{b['errors']} / {g['errors']}", f"of {b['requests']} / {g['requests']} requests"),
        ("usage records stored by the consumer", f"{stored}", f"of {g['requests']} gateway requests"),
    ]
    names = ["bare proxy", "gateway proxy", "redis", "consumer (worker)", "postgres", "web (gunicorn)", "machine"]
    for name in names:
        rows.append((f"CPU s per 1,000 requests: {name}",
                     f"{b['cpu_s_per_1000'].get(name, 0):.3f} / {g['cpu_s_per_1000'].get(name, 0):.3f}",
                     "bare rounds / gateway rounds"))
    met.update(added_p50_le_1ms=added_p50 <= 1.0, throughput_ge_0_9=ratio >= 0.9)


def report_profile(prof: dict[str, Any], results: dict[str, Any]) -> None:
    if prof:
        results["profile"] = prof
        print(f"\nprofile: {prof['requests']} requests; profiled time {prof['profiled_us_per_request']:.0f} us per "
              f"request, of which the plugin's own code {prof['plugin_own_us_per_request']:.0f} us "
              "(cProfile slows everything down: compare shares, not absolute times)")
        print("top entries by own time (us per request, own / cumulative, calls):")
        for e in prof["top_own"][:15]:
            print(f"  {e['own_us_per_request']:7.1f} {e['cumulative_us_per_request']:8.1f} {e['calls']:7d}  "
                  f"{e['function']}")
        print("the plugin's functions by cumulative time (the guard's includes LiteLLM's app it wraps):")
        for e in prof["plugin_cumulative"][:15]:
            print(f"  {e['own_us_per_request']:7.1f} {e['cumulative_us_per_request']:8.1f} {e['calls']:7d}  "
                  f"{e['function']}")


if __name__ == "__main__":
    main()
