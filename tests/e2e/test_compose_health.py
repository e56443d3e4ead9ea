"""docker-compose.yml's health checks, run as compose runs them (the `test` of each service, with its
service's own command), against real processes on loopback: gunicorn serving portal.wsgi, a Celery worker
started with worker-sync's command, beat with its scheduler, and a LiteLLM proxy with the plugin. Each check passes while its process
is healthy and fails when it is not (the process stopped, or the gateway's Redis down)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.procs import LOGS, ROOT, Proc, RedisServer, free_port, http_ok, portal_env, wait_for
from tests.e2e.stack import Stack, database_url

# the test database is set up (and given to the processes) only for a session with a database test
pytestmark = pytest.mark.django_db(transaction=True)

SERVICES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def check_argv(service: str, port_from: int | None = None, port_to: int | None = None) -> list[str]:
    """The service's health check as the container runs it (CMD: argv; CMD-SHELL: sh -c)."""
    test = [str(part).replace("$$", "$") for part in SERVICES[service]["healthcheck"]["test"]]
    if port_from is not None:
        test = [part.replace(f"127.0.0.1:{port_from}", f"127.0.0.1:{port_to}") for part in test]
    kind, rest = test[0], test[1:]
    assert kind in ("CMD", "CMD-SHELL")
    if kind == "CMD-SHELL":
        return ["sh", "-c", " ".join(rest)]
    return [sys.executable if rest[0] in ("python", "python3") else rest[0], *rest[1:]]


def healthy(argv: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=60)
    return done.returncode == 0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: Any) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("compose-redis")
    server = RedisServer(directory).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, django_db_setup: Any) -> dict[str, str]:
    broker = redis_server.url.rsplit("/", 1)[0] + "/1"
    # the image's PATH has celery on it; here it is the virtualenv's
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return portal_env(redis_server.url, database_url(), CELERY_BROKER_URL=broker,
                      HOSTNAME=socket.gethostname(), PATH=path)


def test_web_health_check_asks_gunicorn_for_healthz(env: dict[str, str]) -> None:
    port = free_port()
    command = [str(part).replace("0.0.0.0:8000", f"127.0.0.1:{port}") for part in SERVICES["web"]["command"]]
    command[command.index("-w") + 1] = "1"
    web = Proc(f"compose-web-{port}", [sys.executable, "-m", *command], env)
    web.start()
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "gunicorn", web.p)
        assert healthy(check_argv("web", 8000, port), env)
    finally:
        web.stop()
    assert not healthy(check_argv("web", 8000, port), env)


def test_worker_health_check_pings_the_worker_by_its_own_node_name(env: dict[str, str]) -> None:
    command = [str(part) for part in SERVICES["worker-sync"]["command"]]
    log = LOGS / "compose-worker-sync.log"
    log.unlink(missing_ok=True)  # "ready." of this start, not of an earlier one
    worker = Proc("compose-worker-sync", [sys.executable, "-m", *command], env)
    worker.start()
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 90, "celery worker", worker.p)
        assert healthy(check_argv("worker-sync"), env)
        # another container's hostname: its worker does not answer this one's ping
        assert not healthy(check_argv("worker-sync"), {**env, "HOSTNAME": "another-container"})
    finally:
        worker.stop()


def test_gateway_health_check_fails_when_its_redis_is_down(stack: Stack) -> None:
    """On the session's proxies (tests/e2e/stack.py), started as compose's gateway is: the plugin
    installed by LiteLLM's worker startup hook."""
    gateway = stack.gateways[0]
    argv = check_argv("gateway", 4000, gateway.port)
    env = stack.env
    assert healthy(argv, env)
    stack.redis.stop()
    try:
        wait_for(lambda: not healthy(argv, env), 30, "the gateway's health check failing")
    finally:
        stack.redis.start()
    wait_for(lambda: healthy(argv, env), 30, "the gateway's health check passing again")


def test_beat_health_check_reads_the_heartbeat_beat_writes(env: dict[str, str], redis_server: RedisServer) -> None:
    import redis

    from portal.ops.beat import HEARTBEAT_KEY

    redis.Redis.from_url(redis_server.url).delete(HEARTBEAT_KEY)
    assert not healthy(check_argv("beat"), env), "healthy before beat ever ran"
    command = [str(part) for part in SERVICES["beat"]["command"]]
    beat = Proc("compose-beat", [sys.executable, "-m", *command], env)
    beat.start()
    try:
        wait_for(lambda: healthy(check_argv("beat"), env), 60, "beat's heartbeat", beat.p)
    finally:
        beat.stop()
