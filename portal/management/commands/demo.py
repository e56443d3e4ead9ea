"""python manage.py demo: migrate, seed, start every process of the portal
on loopback, print how to use it, and stop everything on Ctrl-C."""

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

LOG_DIR = Path(settings.BASE_DIR) / "var" / "log"


@dataclass
class Proc:
    name: str
    argv: list[str]
    ready_url: str | None = None
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

    def processes(self, web_port: int) -> list[Proc]:
        python = sys.executable
        return [
            Proc("web", [python, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{web_port}", "-w", "2",
                         "--access-logfile", "-"], f"http://127.0.0.1:{web_port}/login/"),
        ]

    def handle(self, *args: Any, web_port: int, **options: Any) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.stdout.write("Migrating the demo database...")
        call_command("migrate", verbosity=0)
        out = io.StringIO()
        call_command("seed_demo", "--json", stdout=out)
        info = json.loads(out.getvalue())
        procs = self.processes(web_port)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            for proc in procs:
                self.start(proc)
            self.banner(info, web_port)
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
                os.killpg(proc.process.pid, signal.SIGTERM)
        for proc in procs:
            if proc.process:
                try:
                    proc.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.process.pid, signal.SIGKILL)
        self.stdout.write("All demo processes stopped.")

    def banner(self, info: dict[str, Any], web_port: int) -> None:
        web = f"http://127.0.0.1:{web_port}"
        lines = [
            "",
            "LLMOps Portal demo is running.",
            f"  Web UI      {web}/   login {info['login']} / {info['password']}",
            f"  REST API    {web}/api/v1/   docs {web}/api/v1/docs/",
            f"  API token   {info['api_token']}",
            f"  Try:        curl -H 'Authorization: Bearer {info['api_token']}' {web}/api/v1/orgs/{info['org']}/keys/",
            "",
            "Press Ctrl-C to stop.",
        ]
        self.stdout.write("\n".join(lines))
