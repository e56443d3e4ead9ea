"""Real processes for end-to-end tests: a Redis server, LiteLLM proxies with
the portal's plugin, a Celery worker. Each is started once per test session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
LOGS = ROOT / "test-artifacts" / "e2e-logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {LOGS}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout} s; see {LOGS}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name, self.argv, self.env = name, argv, env
        self.log: IO[bytes] | None = None
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log = open(LOGS / f"{self.name}.log", "ab")  # noqa: SIM115
        self.p = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                  start_new_session=True)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.p is None or self.p.poll() is not None:
            return
        try:
            os.killpg(self.p.pid, sig)
            self.p.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class RedisServer(Proc):
    """A Redis of the test session's own, with an append-only file, so that a
    restart keeps its data as a production Redis should."""

    def __init__(self, directory: Path, appendfsync: str = "always") -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        super().__init__(f"redis-{self.port}", [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
            "--appendonly", "yes", "--appendfsync", appendfsync], dict(os.environ))

    def start(self) -> RedisServer:
        super().start()
        import redis

        client = redis.Redis(port=self.port)
        wait_for(lambda: client.ping(), 20, "redis", self.p)
        return self

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def portal_env(redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url, "DATABASE_URL": database_url,
                "PORTAL_GATEWAY_REDIS_URL": redis_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONPATH": str(ROOT), "PORTAL_GATEWAY_CACHE_TTL": "60",
                "PORTAL_USAGE_CLAIM_IDLE_MS": "1000", "LANGFUSE_TIMEOUT": "2",
                # the stand-ins listen on loopback (the outbound URL policy refuses it otherwise)
                "PORTAL_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128,localhost", **extra})
    return env


class Gateway(Proc):
    def __init__(self, env: dict[str, str], config_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(f"gateway-{self.port}", [
            PYTHON, "manage.py", "gateway", "--port", str(self.port), "--config-dir", str(config_dir)], env)

    def wait_ready(self, timeout: float = 180) -> Gateway:
        wait_for(lambda: http_ok(f"{self.url}/health/liveliness"), timeout, self.name, self.p)
        return self


class Worker(Proc):
    def __init__(self, env: dict[str, str], name: str = "e2e") -> None:
        super().__init__(f"worker-{name}", [
            PYTHON, "-m", "celery", "-A", "portal", "worker", "-Q", "sync,usage,evals", "-c", "3",
            "--loglevel", "INFO", "-n", f"{name}@%h", "--without-gossip", "--without-mingle"], env)
