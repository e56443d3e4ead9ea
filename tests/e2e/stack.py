"""The end-to-end stack (a pytest plugin, registered in tests/conftest.py, so that
tests/e2e and tests/security share one), started once per session: PostgreSQL (the test
database), a Redis of its own, two LiteLLM proxies with the plugin, a Celery
worker consuming usage, and a Langfuse stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kombu.pools
import pytest
import redis
from django.conf import settings as django_settings

from gateway.backends.managed import ManagedBackend
from gateway.plugin import contract
from tests.e2e.procs import LOGS, ROOT, Gateway, RedisServer, Worker, portal_env, wait_for
from tests.langfuse_standin import LangfuseStandin

MAIL_DIR = LOGS.parent / "e2e-mail"  # the worker's email goes here, one file per message


@dataclass
class Stack:
    redis: RedisServer
    gateways: list[Gateway]
    worker: Worker
    env: dict[str, str]
    langfuse: LangfuseStandin

    @property
    def state_url(self) -> str:
        return self.redis.url  # db 0: the gateway's state; the Celery broker uses db 1

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.state_url, decode_responses=True)


def database_url() -> str:
    db = django_settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_worker(env: dict[str, str], name: str = "e2e") -> Worker:
    worker = Worker(env, name).start()
    log = LOGS / f"worker-{name}.log"
    wait_for(lambda: "ready." in log.read_text(errors="replace"), 90, "celery worker", worker.p)
    return worker  # it starts reading the usage stream itself, and each consumer hands over to the next


def use_broker(url: str) -> str:
    """Send this process's tasks to `url` from now on; returns the broker they went to before. Tasks sent by
    earlier tests may have bound the producer pools to another broker: they are dropped."""
    from portal.celery import app

    previous = str(app.conf.broker_url)
    app.conf.broker_url = url
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    return previous


@pytest.fixture(scope="session")
def e2e_stack(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e")
    (directory / "redis").mkdir()
    server = RedisServer(directory / "redis").start()
    broker = server.url.rsplit("/", 1)[0] + "/1"
    env = portal_env(server.url, database_url(), CELERY_BROKER_URL=broker,
                     EMAIL_URL=f"filemail:///{MAIL_DIR.relative_to(ROOT)}")
    langfuse = LangfuseStandin(version=4).start()
    with django_db_blocker.unblock():
        gateways = [Gateway(env, directory / f"gw{i}") for i in range(2)]
        env["GATEWAY_INTERNAL_URL"] = gateways[0].url  # the worker's judge and benchmark calls
        for gw in gateways:
            gw.start()
        for gw in gateways:
            gw.wait_ready()
        django_settings.CELERY_BROKER_URL = broker
        use_broker(broker)
        worker = start_worker(env)
    stack = Stack(server, gateways, worker, env, langfuse)
    yield stack
    stack.worker.kill()  # tests may have replaced the worker; its long usage task is safe to cut short
    for gw in gateways:
        gw.stop()
    langfuse.stop()
    server.stop()


@pytest.fixture
def stack(e2e_stack: Stack, settings: Any, transactional_db: Any) -> Iterator[Stack]:
    """Per test: the portal writes to the stack's Redis, which starts empty
    but for what the portal pushes."""
    settings.REDIS_URL = e2e_stack.state_url
    client = e2e_stack.client()
    client.flushdb()
    ManagedBackend().push_all()
    time.sleep(0.2)  # the proxies drop their caches on the reset event
    yield e2e_stack
    e2e_stack.langfuse.clear_faults()
    quiesce(e2e_stack)


def quiesce(stack: Stack, timeout: float = 20.0) -> None:
    """Let the worker finish what the test started before the database is
    emptied: a usage batch or a run still writing while pytest-django
    truncates the tables can deadlock with it."""
    from evals.models import BenchmarkRun, EvalRun

    client = stack.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pending = client.xlen(contract.USAGE_STREAM) if client.exists(contract.USAGE_STREAM) else 0
        except redis.RedisError:
            pending = 0
        busy = EvalRun.objects.filter(status__in=["queued", "running"]).exists() or \
            BenchmarkRun.objects.filter(status__in=["queued", "running"]).exists()
        if not pending and not busy:
            break
        time.sleep(0.2)
    time.sleep(0.3)  # the last batch's commit
