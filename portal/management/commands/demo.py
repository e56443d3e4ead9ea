"""python manage.py demo: migrate, seed (beat's schedule, the demo organization),
start every process of the portal on loopback, print how to use it, and stop
everything on Ctrl-C.

Langfuse: with `LANGFUSE_HOST`, `LANGFUSE_PUBLIC_KEY` and `LANGFUSE_SECRET_KEY`
in the environment the demo project is connected to that Langfuse; otherwise the
demo starts the project's spec-following Langfuse stand-in (`tests/langfuse_standin`,
in memory: its traces are seeded again on every start) and sets
`LANGFUSE_STANDIN_URL` so that the UI labels the connection as the stand-in."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from portal.gunicorn_logging import ACCESS_FORMAT

LOG_DIR = Path(settings.BASE_DIR) / "var" / "log"


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def forget_gateway_state() -> int:
    """A new demo database starts its ids at 1 again: drop what an earlier
    demo left in Redis (key documents, counters, unconsumed usage events) so
    none of it is taken for the new organization's."""
    import redis

    from gateway.plugin import contract

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    stale = list(client.scan_iter(match=f"{contract.PREFIX}:*", count=1000))
    for start in range(0, len(stale), 500):
        client.delete(*stale[start:start + 500])
    return len(stale)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def wait_redis(timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not redis_reachable():
        if time.monotonic() > deadline:
            raise CommandError("redis-server did not start; see var/log/redis.log")
        time.sleep(0.2)


@dataclass
class Proc:
    name: str
    argv: list[str]
    ready_url: str | None = None
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status still means it answers
                return True
            time.sleep(0.3)
    return False


class Command(BaseCommand):
    help = "Run the portal's demo: web UI and API on 127.0.0.1:8000 with a seeded organization."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--web-port", type=int, default=8000)
        parser.add_argument("--gateway-port", type=int, default=4000)
        parser.add_argument("--langfuse-port", type=int, default=3100, help="The Langfuse stand-in's port.")

    def langfuse(self, port: int) -> tuple[Proc | None, list[str]]:
        """The Langfuse to connect the demo project to: the configured one, or the stand-in (a process
        to start first) at `port`; and `seed_demo`'s options for it."""
        from portal.management.commands._demo_evals import STANDIN_PROJECT, STANDIN_PUBLIC_KEY, STANDIN_SECRET_KEY

        configured = [os.environ.get(v, "") for v in ("LANGFUSE_HOST", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY")]
        if all(configured):
            return None, []
        url = f"http://127.0.0.1:{port}"
        os.environ["LANGFUSE_STANDIN_URL"] = settings.LANGFUSE_STANDIN_URL = url  # for this process and its children
        proc = Proc("langfuse-standin", [sys.executable, "-m", "tests.langfuse_standin", "--port", str(port),
                                         "--version", "4", "--project",
                                         f"{STANDIN_PROJECT}:{STANDIN_PUBLIC_KEY}:{STANDIN_SECRET_KEY}"],
                    f"{url}/api/public/health")
        return proc, ["--langfuse-host", url, "--langfuse-public-key", STANDIN_PUBLIC_KEY,
                      "--langfuse-secret-key", STANDIN_SECRET_KEY]

    def processes(self, web_port: int, gateway_port: int) -> list[Proc]:
        python = sys.executable
        procs = []
        if not redis_reachable():
            procs.append(Proc("redis", ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no"]))
        return procs + [
            Proc("web", [python, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{web_port}", "-w", "2",
                         "--access-logfile", "-", "--logger-class", "portal.gunicorn_logging.AccessLogger",
                         "--access-logformat", ACCESS_FORMAT], f"http://127.0.0.1:{web_port}/login/"),
            Proc("gateway", [python, "manage.py", "gateway", "--port", str(gateway_port)],
                 f"http://127.0.0.1:{gateway_port}/health/liveliness"),
            # SIGQUIT: a cold shutdown; the long usage task is safe to cut (acknowledged late, idempotent)
            Proc("worker", [python, "-m", "celery", "-A", "portal", "worker", "-Q", "sync,usage,evals", "-c", "3",
                            "--loglevel", "INFO", "-n", "demo@%h"], stop_signal=signal.SIGQUIT),
            Proc("beat", [python, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                          "--scheduler", "portal.ops.beat:HeartbeatScheduler"]),  # doctor reads its heartbeat
        ]

    def handle(self, *args: Any, web_port: int, gateway_port: int, langfuse_port: int, **options: Any) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.stdout.write("Migrating the demo database...")
        fresh_database = "django_migrations" not in connection.introspection.table_names()
        call_command("migrate", verbosity=0)
        call_command("seed_beat", stdout=io.StringIO())  # beat's housekeeping entries (portal/schedule.py)
        if fresh_database and redis_reachable():
            dropped = forget_gateway_state()
            if dropped:
                self.stdout.write(f"New database: dropped {dropped} gateway entries an earlier demo left in Redis.")
        standin, langfuse_options = self.langfuse(langfuse_port)
        procs = ([standin] if standin else []) + self.processes(web_port, gateway_port)
        # Ctrl-C, kill and a closed terminal all stop everything, also when the demo was started in the
        # background (where a shell starts it with SIGINT ignored).
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, interrupt)
        try:
            if standin:
                self.start(standin)  # first: the seed writes the demo's traces to it
            out = io.StringIO()
            call_command("seed_demo", "--json", *langfuse_options, stdout=out)
            info = json.loads(out.getvalue())
            for proc in procs[1 if standin else 0:]:
                self.start(proc)
                if proc.name == "redis":
                    wait_redis()
            self.banner(info, web_port, gateway_port)
            while True:
                for proc in procs:
                    if proc.process and proc.process.poll() is not None:
                        raise CommandError(f"{proc.name} exited with {proc.process.returncode}; "
                                           f"see {LOG_DIR / (proc.name + '.log')}")
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping...")
        finally:
            self.stop(procs)

    def start(self, proc: Proc) -> None:
        log = open(LOG_DIR / f"{proc.name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        proc.process = subprocess.Popen(proc.argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                        start_new_session=True)
        self.stdout.write(f"  started {proc.name} (pid {proc.process.pid}, log var/log/{proc.name}.log)")
        if proc.ready_url and not wait_http(proc.ready_url, 120, proc.process):
            raise CommandError(f"{proc.name} did not come up; see var/log/{proc.name}.log")

    def stop(self, procs: list[Proc]) -> None:
        for proc in reversed(procs):
            if proc.process and proc.process.poll() is None:
                os.killpg(proc.process.pid, proc.stop_signal)
        for proc in procs:
            if proc.process:
                try:
                    proc.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.process.pid, signal.SIGKILL)
        self.stdout.write("All demo processes stopped.")

    @staticmethod
    def langfuse_line(info: dict[str, Any]) -> str:
        lf = info.get("langfuse")
        if not lf:
            return "not connected"
        kind = "the Langfuse stand-in (in memory; set LANGFUSE_HOST and keys for a real one)" if lf["standin"] \
            else "your Langfuse"
        return f"{lf['host']}  {kind}, {lf['traces']} demo traces"

    def banner(self, info: dict[str, Any], web_port: int, gateway_port: int) -> None:
        web, gw, key, token = (f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{gateway_port}",
                               info["demo_key"], info["api_token"])
        cline = info["cline"]
        lines = [
            "",
            "LLMOps Portal demo is running (web, gateway = LiteLLM with the portal's plugin, worker, beat, Redis).",
            f"  Web UI      {web}/   login {info['login']} / {info['password']}",
            f"  REST API    {web}/api/v1/   docs {web}/api/v1/docs/",
            f"  API token   {token}",
            f"  Gateway     {gw}/v1   (OpenAI-compatible)",
            f"  Demo key    {key}",
            "  Langfuse    " + self.langfuse_line(info),
            f"  Evaluations {web}/orgs/{info['org']}/projects/{info['project']}/evaluators/   (runs, datasets, "
            "benchmarks, calibration: the project's tabs)",
            "",
            "Call the gateway with the demo key:",
            f"  curl {gw}/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
            "       -d '{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'",
            "",
            "Then see its usage (a second or so later):",
            f"  curl -H 'Authorization: Bearer {token}' '{web}/api/v1/orgs/{info['org']}/usage/?group_by=key'",
            "",
            "Cline (VS Code): API Provider 'LiteLLM', Base URL " + cline["base_url"] + f", API Key {key}, Model "
            + cline["model"],
            f"Cline CLI: write this to {cline['cli_providers_json_path']}:",
            "  " + json.dumps(cline["cli_providers_json"]),
            "",
            "Press Ctrl-C to stop everything.",
        ]
        self.stdout.write("\n".join(lines))
