"""Faults: Redis restarts, the database is down for the usage consumer, the
consumer is killed mid-batch. Proxies recover by themselves and no usage
event is lost or counted twice."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from django.db.models import Sum

from gateway.models import UsageDaily, UsageRecord
from gateway.plugin import contract
from tests.e2e.conftest import Stack, start_worker
from tests.e2e.helpers import chat, issue_key, status_of, until
from tests.e2e.procs import LOGS, RedisServer, portal_env
from tests.e2e.stack import database_url
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_redis_restart_proxies_recover_by_themselves_and_no_usage_is_lost(stack: Stack, acme: Tenant) -> None:
    key = issue_key(acme)
    budgeted = issue_key(acme, max_budget="10")
    served = 0
    for gw in stack.gateways:
        assert status_of(lambda gw=gw: chat(gw.url, key["key"]))[0] == 200
        assert status_of(lambda gw=gw: chat(gw.url, budgeted["key"]))[0] == 200
        served += 1
    stack.redis.stop()
    # a key without budgets or rate limits is still served from the proxy's cache; its usage is kept
    # in memory until Redis is back. A budgeted key cannot be admitted without Redis: 503, retry.
    assert status_of(lambda: chat(stack.gateways[0].url, key["key"]))[0] == 200
    served += 1
    code, message = status_of(lambda: chat(stack.gateways[0].url, budgeted["key"]))
    assert code == 503 and "retry" in message
    stack.redis.start()
    for gw in stack.gateways:
        waited = until(lambda gw=gw: status_of(lambda: chat(gw.url, key["key"]))[0] == 200, 15, 0.2)
        served += 1
        print(f"{gw.name} served again {waited:.1f} s after Redis came back")
    until(lambda: UsageRecord.objects.filter(key_id=key["id"]).count() == served, 20, 0.2)
    time.sleep(1)
    assert UsageRecord.objects.filter(key_id=key["id"]).count() == served


def test_a_worker_survives_its_broker_restarting_under_a_running_task(tmp_path: Path) -> None:
    """Celery 5.7 / kombu 5.7 made a worker that holds an unacknowledged message (the usage consumer
    always is one) exit with "Unrecoverable error" when its Redis went away (portal/celery_consumer.py).
    A Redis and a worker of this test's own, so that the stack's are not disturbed."""
    from celery import Celery

    server = RedisServer(tmp_path).start()
    broker = server.url.rsplit("/", 1)[0] + "/1"
    name = f"restart{uuid.uuid4().hex[:6]}"
    log = LOGS / f"worker-{name}.log"
    worker = start_worker(portal_env(server.url, database_url(), CELERY_BROKER_URL=broker), name)
    app = Celery(broker=broker, set_as_current=False)  # not the current app: the tests after this one send tasks through it
    try:
        until(lambda: "gateway.tasks.usage_consume[" in log.read_text(errors="replace"), 20, 0.2)
        server.restart(down_for=1.0)
        node = [f"{name}@{worker_host(log)}"]
        waited = until(lambda: bool(app.control.ping(destination=node, timeout=1)), 30, 0.5)
        print(f"the worker answered {waited:.1f} s after Redis came back")
        # the task received before the loss ends after it (the consumer reads for about a minute): its ack,
        # on the lost connection, was the second way the worker died
        until(lambda: "usage_consume" in log.read_text(errors="replace").split("Connection to broker lost", 1)[-1]
              and " succeeded in " in log.read_text(errors="replace").split("Connection to broker lost", 1)[-1],
              90, 0.5)
        time.sleep(1)
        assert app.control.ping(destination=node, timeout=2), "the worker stopped answering after its task ended"
        assert "Unrecoverable error" not in log.read_text(errors="replace")
        assert worker.p is not None and worker.p.poll() is None
    finally:
        app.close()
        worker.stop()
        server.stop()


def worker_host(log: Path) -> str:
    """The host part of the worker's node name, as its log's banner prints it (`name@host ready.`)."""
    for line in log.read_text(errors="replace").splitlines():
        if line.rstrip().endswith(" ready."):
            return line.rstrip()[: -len(" ready.")].rsplit("@", 1)[1]
    raise AssertionError("the worker's log has no ready line")


def test_with_the_database_down_proxies_keep_serving_and_usage_waits_in_the_stream(stack: Stack,
                                                                                  acme: Tenant) -> None:
    key = issue_key(acme)
    stack.worker.kill()
    broken = dict(stack.env, DATABASE_URL="postgres://postgres@127.0.0.1:1/unreachable")
    nodb = start_worker(broken, "nodb")
    try:
        for i in range(10):
            assert chat(stack.gateways[i % 2].url, key["key"]).choices[0].message.content == "hello from acme"
        r = stack.client()
        assert r.xlen(contract.USAGE_STREAM) >= 10  # every event waits in the stream
        time.sleep(2)  # the consumer keeps trying...
        assert UsageRecord.objects.filter(key_id=key["id"]).count() == 0  # ...and cannot store them
    finally:
        nodb.kill()
    stack.worker = start_worker(stack.env)
    until(lambda: UsageRecord.objects.filter(key_id=key["id"]).count() == 10, 20, 0.2)
    assert int(stack.client().xpending(contract.USAGE_STREAM, contract.USAGE_GROUP)["pending"]) == 0


def test_a_consumer_killed_mid_batch_leaves_no_duplicates(stack: Stack, acme: Tenant) -> None:
    n = 20_000
    stack.worker.kill()
    r = stack.client()
    pipe = r.pipeline(transaction=False)
    now = time.time()
    for i in range(n):
        event = {"request_id": uuid.uuid4().hex, "ts": now, "key_id": acme.key.pk, "key_hash": acme.key.key_hash,
                 "org": acme.org.pk, "team": acme.team.pk, "project": acme.project.pk, "owner": "member@acme.test",
                 "route": "chat", "group": "acme/chat", "deployment": "dep-1", "provider_model": "gpt-4o-mini",
                 "prompt_tokens": 10, "completion_tokens": 20, "cost_nano": 1000 + i % 7, "latency_ms": 12.5,
                 "status": "success", "status_code": 200, "error_class": "", "trace_id": ""}
        pipe.xadd(contract.USAGE_STREAM, {"event": json.dumps(event)})
    pipe.execute()
    expected_cost = sum(1000 + i % 7 for i in range(n))
    stack.worker = start_worker(stack.env)
    until(lambda: UsageRecord.objects.filter(key=acme.key).exists(), 20, 0.01)
    time.sleep(0.3)
    stack.worker.kill()  # in the middle of ingesting
    stored_at_kill = UsageRecord.objects.filter(key=acme.key).count()
    pending = int(r.xpending(contract.USAGE_STREAM, contract.USAGE_GROUP)["pending"])
    print(f"killed with {stored_at_kill} stored and {pending} delivered but unacknowledged")
    assert stored_at_kill < n
    stack.worker = start_worker(stack.env)
    until(lambda: UsageRecord.objects.filter(key=acme.key).count() == n, 60, 0.2)
    until(lambda: int(r.xpending(contract.USAGE_STREAM, contract.USAGE_GROUP)["pending"]) == 0, 20, 0.2)
    assert UsageRecord.objects.filter(key=acme.key).values("request_id").distinct().count() == n
    rollup = UsageDaily.objects.filter(key=acme.key).aggregate(requests=Sum("requests"), cost=Sum("cost"))
    assert rollup["requests"] == n
    assert int(rollup["cost"] * contract.NANO) == expected_cost
