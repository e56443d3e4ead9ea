"""Redis with a replica behind Sentinel: the portal, the Celery worker (broker
and usage consumer) and a real LiteLLM proxy with the plugin all reach Redis by
one `redis+sentinel://` URL, and after a failover (SENTINEL FAILOVER) requests
keep being served, with keys, revocations and budgets intact."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway import usage
from gateway.models import UsageRecord
from gateway.plugin import contract, redisconn
from portal.celery import CONSUMER_WATCH_SECONDS
from tests.e2e.helpers import chat, issue_key, status_of, until
from tests.e2e.procs import LOGS, Gateway, Proc, RedisServer, Worker, free_port, portal_env, wait_for
from tests.e2e.stack import database_url
from tests.factories import Tenant, make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SERVICE = "portal-redis"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class SentinelServer(Proc):
    """`redis-server --sentinel` watching one primary (quorum 1: a single sentinel may fail over)."""

    def __init__(self, directory: Path, primary_port: int) -> None:
        self.port = free_port()
        conf = directory / f"sentinel-{self.port}.conf"  # Sentinel rewrites its file: one of its own
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
                        f"sentinel down-after-milliseconds {SERVICE} 2000\n"
                        f"sentinel failover-timeout {SERVICE} 10000\n")
        super().__init__(f"sentinel-{self.port}", [REDIS_SERVER, str(conf), "--sentinel"], dict(os.environ))
        self.client = redis.Redis(port=self.port, decode_responses=True)

    def primary_port(self) -> int:
        address: Any = self.client.sentinel_get_master_addr_by_name(SERVICE)
        return int(address[1])

    def masters_port(self) -> int:
        """The primary's port as SENTINEL MASTERS gives it (what redis-py's clients ask)."""
        masters: Any = self.client.sentinel_masters()
        return int(masters[SERVICE]["port"])

    def knows_a_healthy_replica(self) -> bool:
        replicas = self.client.sentinel_slaves(SERVICE)
        return any(r["is_slave"] and not r["is_sdown"] and r["master-link-status"] == "ok" for r in replicas)


@dataclass
class HA:
    servers: dict[int, RedisServer]  # by port
    sentinel: SentinelServer
    url: str  # the gateway's state, db 0
    broker: str  # Celery's, db 1
    gateway: Gateway

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel.primary_port(), decode_responses=True)

    def fail_over(self) -> tuple[int, int]:
        """SENTINEL FAILOVER, until the sentinels name the replica as the primary. The old primary is
        still up and a primary itself then, until Sentinel turns it into a replica (`demoted`)."""
        old = self.sentinel.primary_port()
        self.sentinel.client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait_for(lambda: self.sentinel.primary_port() != old and self.sentinel.masters_port() != old, 20, "failover")
        return old, self.sentinel.primary_port()

    def role(self, port: int) -> str:
        return str(redis.Redis(port=port, decode_responses=True).info("replication")["role"])

    def demoted(self, old: int) -> None:
        wait_for(lambda: self.role(old) == "slave", 30, "old primary demoted")


@pytest.fixture(scope="module")
def ha(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[HA]:
    directory = tmp_path_factory.mktemp("sentinel")
    servers = []
    for name in ("primary", "replica"):
        (directory / name).mkdir()
        servers.append(RedisServer(directory / name))
    primary, replica = servers
    replica.argv += ["--replicaof", "127.0.0.1", str(primary.port)]
    sentinel = SentinelServer(directory, primary.port)
    # The first sentinel address listed answers nothing: clients go on to the next one.
    sentinels = f"127.0.0.1:{free_port()},127.0.0.1:{sentinel.port}"
    url, broker = f"redis+sentinel://{sentinels}/{SERVICE}/0", f"redis+sentinel://{sentinels}/{SERVICE}/1"
    env = portal_env(url, database_url(), CELERY_BROKER_URL=broker)
    gateway, worker = Gateway(env, directory / "gw"), Worker(env, "sentinel")
    log = LOGS / "worker-sentinel.log"
    log.unlink(missing_ok=True)
    try:
        primary.start()
        replica.start()
        sentinel.start()
        with django_db_blocker.unblock():
            gateway.start()  # the proxy and the worker start at once: the proxy takes longest
            worker.start()
            wait_for(lambda: "ready." in log.read_text(errors="replace"), 90, "celery worker", worker.p)
            gateway.wait_ready()
        wait_for(sentinel.knows_a_healthy_replica, 30, "sentinel discovering the replica", sentinel.p)
        yield HA({primary.port: primary, replica.port: replica}, sentinel, url, broker, gateway)
    finally:
        worker.kill()
        gateway.stop()
        sentinel.stop()
        for server in servers:
            server.stop()


def priced_route(t: Tenant) -> None:
    response = t.client("admin").post(t.url("routes/"), {
        "name": "priced", "input_cost_per_million": 1000, "output_cost_per_million": 2000,
        "deployments": [{"model": "gpt-4o-mini", "litellm_params": {"mock_response": "a priced answer"}}]},
        format="json")
    assert response.status_code == 201, response.content


def served(gateway: Gateway, key: str, model: str = "priced") -> int:
    return status_of(lambda: chat(gateway.url, key, model=model))[0]


def usage_count(key_id: int) -> int:
    return UsageRecord.objects.filter(key_id=key_id).count()


def test_a_failover_keeps_keys_revocations_and_budgets(ha: HA, settings: Any) -> None:
    settings.REDIS_URL = ha.url  # the portal writes through Sentinel to whichever node is the primary
    acme = make_tenant("acme")
    priced_route(acme)
    gw = ha.gateway
    warm = issue_key(acme, allowed_routes=["priced"])
    until(lambda: served(gw, warm["key"]) == 200, 10, 0.1)
    until(lambda: usage_count(warm["id"]) == 1, 10)  # the worker's consumer reads the stream through Sentinel
    per_request = UsageRecord.objects.get(key_id=warm["id"]).cost
    budget = (per_request * Decimal("2.5")).quantize(Decimal("0.0001"))  # 3 requests are admitted
    assert -(-int(budget * contract.NANO) // int(per_request * contract.NANO)) == 3
    budgeted = issue_key(acme, allowed_routes=["priced"], max_budget=str(budget))
    revoked = issue_key(acme, allowed_routes=["priced"])
    assert served(gw, revoked["key"]) == 200
    assert acme.client("owner").post(acme.url(f"keys/{revoked['id']}/revoke/")).status_code == 200
    until(lambda: served(gw, revoked["key"]) == 401, 5)
    assert served(gw, budgeted["key"]) == 200
    until(lambda: usage_count(budgeted["id"]) == 1, 10)

    in_window = issue_key(acme, allowed_routes=["priced"])
    assert served(gw, in_window["key"]) == 200

    old, new = ha.fail_over()
    switched = time.monotonic()
    # The sentinels name the new primary; the old one is still a primary for about 10 s. The portal writes
    # to the new one, and the proxy's event listener moves there within a second: a revocation now reaches
    # the proxy at once, not when Sentinel demotes the old primary.
    assert acme.client("owner").post(acme.url(f"keys/{in_window['id']}/revoke/")).status_code == 200
    heard = until(lambda: served(gw, in_window["key"]) == 401, 3, 0.05)
    old_role = ha.role(old)
    print(f"primary {old} -> {new}; a revocation {time.monotonic() - switched:.2f} s after the switch reached "
          f"the proxy in {heard:.2f} s; the old primary was still a {old_role}")
    ha.demoted(old)
    demoted = time.monotonic()
    print(f"old primary demoted {demoted - switched:.2f} s after the switch")
    assert ha.primary().info("replication")["role"] == "master"
    # Served again once the proxy's next connection asked the sentinels (no restart, no reconfiguration).
    waited = until(lambda: served(gw, budgeted["key"]) == 200, 15, 0.1)
    print(f"the proxy served again {waited:.2f} s after the demotion")
    assert served(gw, budgeted["key"]) == 200  # the third of three
    code, message = status_of(lambda: chat(gw.url, budgeted["key"], model="priced"))
    assert code == 429, message  # the spend counters came over with the replica: the budget holds
    for key in (revoked, in_window):
        code, message = status_of(lambda k=key: chat(gw.url, k["key"], model="priced"))  # type: ignore[misc]
        assert code == 401 and "revoked" in message
    assert served(gw, warm["key"]) == 200

    # The portal writes to the new primary, and the proxy hears its events: a key issued and revoked now.
    fresh = issue_key(acme, allowed_routes=["priced"])
    until(lambda: served(gw, fresh["key"]) == 200, 5, 0.1)
    assert acme.client("owner").post(acme.url(f"keys/{fresh['id']}/revoke/")).status_code == 200
    until(lambda: served(gw, fresh["key"]) == 401, 2, 0.02)  # the revocation event, not the cache's TTL
    # Usage of every request served after the failover reaches the database, within the documented bound
    # (docs/operations.md): the consumer hands over to the next through the broker, and kombu stays on the
    # old primary until it is demoted, so a hand-over sent meanwhile is lost with it; the worker restarts
    # the chain within CONSUMER_WATCH_SECONDS once the lapsed consumer lock shows none runs. Nothing is lost.
    bound = CONSUMER_WATCH_SECONDS + usage.CONSUMER_LOCK_MS / 1000 + 20
    counts = (usage_count(budgeted["id"]), usage_count(warm["id"]), usage_count(fresh["id"]))
    until(lambda: (usage_count(budgeted["id"]), usage_count(warm["id"]), usage_count(fresh["id"])) == (3, 2, 1),
          max(1.0, bound - (time.monotonic() - demoted)), 0.2)
    print(f"usage stored {time.monotonic() - demoted:.2f} s after the demotion (bound {bound:.0f} s; "
          f"counts {counts} when the wait began)")
    spent = int(ha.primary().get(contract.budget_keys("key", budgeted["id"], "all")[0]) or 0)
    assert spent == 3 * int(per_request * contract.NANO)


def test_a_dead_sentinel_listed_first_is_skipped_at_once(ha: HA) -> None:
    """A new client (the event listener reconnecting, a worker starting) asks the sentinels in their order:
    one that does not answer (the first listed here) is skipped for the next at once, not retried with
    redis-py's default backoff (about 4 s each time, which delayed the listener's reconnection)."""
    started = time.monotonic()
    client = redisconn.from_url(ha.url, socket_connect_timeout=2)
    try:
        assert client.ping()
    finally:
        client.close()

    async def ping() -> bool:
        aclient = redisconn.async_from_url(ha.url, socket_connect_timeout=2)
        try:
            return bool(await aclient.ping())
        finally:
            await aclient.aclose()

    assert asyncio.run(ping())
    took = time.monotonic() - started
    print(f"two new clients past a dead sentinel in {took:.2f} s")
    assert took < 1.5
