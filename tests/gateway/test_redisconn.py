"""The Redis URL forms (gateway/plugin/redisconn.py): plain URLs unchanged, the
Sentinel form parsed, refused with a clear message when malformed, and turned
into kombu's form for Celery. Failover with real processes: tests/e2e/test_sentinel.py."""

from __future__ import annotations

import kombu
import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel

from gateway.plugin import redisconn


def test_a_plain_url_is_redis_pys_own() -> None:
    assert redisconn.parse_sentinel("redis://127.0.0.1:6379/3") is None
    client = redisconn.from_url("redis://:pw@127.0.0.1:6390/3", decode_responses=True)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("127.0.0.1", 6390, 3, "pw")
    assert isinstance(redisconn.async_from_url("redis://127.0.0.1:6390/3"), aioredis.Redis)
    assert redisconn.celery_broker("redis://127.0.0.1:6379/1") == ("redis://127.0.0.1:6379/1", {})


def test_the_sentinel_form() -> None:
    spec = redisconn.parse_sentinel(
        "redis+sentinel://app:s%40cret@s1:26380,s2,[::1]:26381/mymaster/2?sentinel_password=sp")
    assert spec == redisconn.SentinelURL(
        sentinels=[("s1", 26380), ("s2", 26379), ("::1", 26381)], service="mymaster", db=2, username="app",
        password="s@cret", sentinel_auth={"password": "sp"})
    assert redisconn.parse_sentinel("redis+sentinel://s1/mymaster").db == 0  # type: ignore[union-attr]


def test_a_sentinel_client_asks_the_sentinels_for_the_primary() -> None:
    client = redisconn.from_url("redis+sentinel://:pw@s1:26380,s2/mymaster/2", decode_responses=True,
                                socket_timeout=1)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("s1", 26380), ("s2", 26379)]
    # the sentinels get the socket options, not the data nodes' password
    assert sentinels[0].connection_pool.connection_kwargs["password"] is None
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 1
    aclient = redisconn.async_from_url("redis+sentinel://s1/mymaster")
    assert isinstance(client.connection_pool, redisconn.FollowingPool)  # follows a planned failover
    assert isinstance(aclient.connection_pool, redisconn.AsyncFollowingPool)
    assert isinstance(aclient.connection_pool, aiosentinel.SentinelConnectionPool)


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+sentinel:///mymaster", "no sentinel address"),
    ("redis+sentinel://s1:26379", "/<service name>"),
    ("redis+sentinel://s1:26379/mymaster/x", "'x' is not a database number"),
    ("redis+sentinel://s1:port/mymaster", "'port' is not a port"),
    ("redis+sentinel://s1:70000/mymaster", "70000 is not a port"),
    ("redis+sentinel://s1/mymaster?master=x", "unknown option 'master'"),
])
def test_a_malformed_sentinel_url_is_refused_without_its_password(url: str, problem: str) -> None:
    url = url.replace("://", "://user:hunter2@", 1)
    with pytest.raises(ValueError, match=problem) as caught:
        redisconn.parse_sentinel(url)
    assert "hunter2" not in str(caught.value) and "user:***@" in str(caught.value)


def test_describe_hides_passwords() -> None:
    assert redisconn.describe("redis+sentinel://u:p@s1,s2/m/0?sentinel_password=q") == \
        "redis+sentinel://u:***@s1,s2/m/0?sentinel_password=***"
    assert redisconn.describe("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_celery_gets_kombus_sentinel_form() -> None:
    broker, options = redisconn.celery_broker("redis+sentinel://:p%3Aw@s1:26380,s2/mymaster/1?sentinel_password=sp")
    assert broker == "sentinel://:p%3Aw@s1:26380/1;sentinel://:p%3Aw@s2:26379/1"
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}}
    connection = kombu.Connection(broker, transport_options=options)
    assert connection.transport_cls == "sentinel"
    assert connection.alt == ["sentinel://:p%3Aw@s1:26380/1", "sentinel://:p%3Aw@s2:26379/1"]
    assert (connection.hostname, connection.port, connection.password, connection.virtual_host) == \
        ("s1", 26380, "p:w", "1")
