"""Redis clients from one URL, a plain Redis or one behind Sentinel.

Standard library and `redis` only: the plugin (inside the stock LiteLLM
proxy), the portal (`gateway.redis_connection`) and the settings (the Celery
broker) all read their Redis URL through this module, so one form works for
`REDIS_URL`, `CELERY_BROKER_URL` and `PORTAL_GATEWAY_REDIS_URL`:

    redis://[[user]:password@]host[:port][/db]           one Redis (as redis-py reads it)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?sentinel_password=...]

In the Sentinel form the hosts are the sentinels (port 26379 unless given),
`service` the name they monitor (`sentinel monitor <service> ...`), user and
password the data nodes' own (AUTH on the primary), `sentinel_username` and
`sentinel_password` the sentinels' if they require one. Clients follow the
primary across a failover: a connection to the old one fails (Sentinel
disconnects its clients, or it answers READONLY) and the next asks the
sentinels where the primary is now. A planned failover (SENTINEL FAILOVER)
leaves the old primary up and writable for some seconds, until Sentinel
turns it into a replica: so that no write lands there meanwhile (and is lost
when it resyncs), a client also asks the sentinels at most once every
PRIMARY_CHECK_SECONDS, when it takes a connection, and moves to the new primary.

redis-py reads no Sentinel URL and kombu (Celery's broker) has its own
(`sentinel://h1:26379;sentinel://h2:26379/db` plus a `master_name` transport
option): `celery_broker` turns ours into kombu's."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})
PRIMARY_CHECK_SECONDS = 1.0


class FollowingPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel pool that re-asks where the primary is, at most every
    PRIMARY_CHECK_SECONDS: when it moved, idle connections are closed at once
    and busy ones when they come back (`owns_connection`)."""

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + PRIMARY_CHECK_SECONDS
            try:
                self.get_master_address()
            except redis.ConnectionError:
                pass  # no sentinel answers: keep the primary we know
        return super().get_connection(*args, **kwargs)


class AsyncFollowingPool(aiosentinel.SentinelConnectionPool):
    """FollowingPool for redis.asyncio."""

    _next_check = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + PRIMARY_CHECK_SECONDS
            try:
                await self.get_master_address()
            except redis.ConnectionError:
                pass
        return await super().get_connection(*args, **kwargs)


def primary_moved(client: redis.Redis, connection: Any) -> bool:
    """Whether a Sentinel client's `connection` (a long-lived one: pub/sub) is no longer to the node the
    sentinels name as the primary (asks them now). False for a plain client, a connection not
    connected, or when no sentinel answers (keep what we have)."""
    pool = client.connection_pool
    if not isinstance(pool, redis.sentinel.SentinelConnectionPool) or connection is None:
        return False
    try:
        host, port = pool.get_master_address()
    except redis.ConnectionError:
        return False
    return (str(connection.host), int(connection.port)) != (str(host), int(port))


def node_of(connection: Any) -> str:
    """host:port of a connection (for logs), or "?"."""
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


@dataclass(frozen=True)
class SentinelURL:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_auth: dict[str, str] = field(default_factory=dict)


def _host_port(item: str, url: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
    if not host:  # no port given
        host, port = item, ""
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{describe(url)}: a sentinel address without a host")
    try:
        number = int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"{describe(url)}: {port!r} is not a port") from None
    if not 0 < number < 65536:
        raise ValueError(f"{describe(url)}: {number} is not a port")
    return host, number


def parse_sentinel(url: str) -> SentinelURL | None:
    """The Sentinel URL's parts; None for any other URL. ValueError, naming
    what is wrong (never the password), for a malformed one."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != SCHEME:
        return None
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if has_password else None
    sentinels = [_host_port(item, url) for item in hosts.split(",") if item]
    if not sentinels:
        raise ValueError(f"{describe(url)}: no sentinel address (redis+sentinel://host:26379,.../service)")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError(f"{describe(url)}: the path must be /<service name>[/<db>], the name Sentinel monitors")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"{describe(url)}: {path[1]!r} is not a database number")
        db = int(path[1])
    options = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - SENTINEL_OPTIONS)
    if unknown:
        raise ValueError(f"{describe(url)}: unknown option {unknown[0]!r} (known: {', '.join(sorted(SENTINEL_OPTIONS))})")
    auth = {name[len("sentinel_"):]: values[-1] for name, values in options.items()}
    return SentinelURL(sentinels, urllib.parse.unquote(path[0]), db, username, password, auth)


def describe(url: str) -> str:
    """The URL without its password (for logs and error messages)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    # Every option's value masked, not only those named *password*: a mistyped `sentinel_passwd=` holds one too.
    query = "&".join(f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}{at}{hosts}", parts.path, query, parts.fragment))


def _sentinel_kwargs(spec: SentinelURL, kwargs: dict[str, Any], retry: Any) -> dict[str, Any]:
    """The sentinels' connections: the same socket options, their own credentials, and no retry: a
    sentinel that does not answer is skipped for the next one at once (redis-py's default retries it
    three times with backoff, about 4 s, on every new client: the event listener reconnected that late)."""
    return {**{k: v for k, v in kwargs.items() if k.startswith("socket_")}, **spec.sentinel_auth, "retry": retry}


def _node_kwargs(spec: SentinelURL, kwargs: dict[str, Any]) -> dict[str, Any]:
    node = {"db": spec.db, **kwargs}
    if spec.username is not None:
        node["username"] = spec.username
    if spec.password is not None:
        node["password"] = spec.password
    return node


def from_url(url: str, **kwargs: Any) -> redis.Redis:
    """`redis.Redis.from_url`, and the Sentinel form: a client of the current primary."""
    spec = parse_sentinel(url)
    if spec is None:
        return redis.Redis.from_url(url, **kwargs)
    sentinel = redis.sentinel.Sentinel(spec.sentinels,
                                       sentinel_kwargs=_sentinel_kwargs(spec, kwargs, Retry(NoBackoff(), 0)))
    client = sentinel.master_for(spec.service, redis_class=redis.Redis, connection_pool_class=FollowingPool,
                                 **_node_kwargs(spec, kwargs))
    client.auto_close_connection_pool = True  # as from_url's: close() closes the client's connections
    return client


def async_from_url(url: str, **kwargs: Any) -> aioredis.Redis:
    """`redis.asyncio.Redis.from_url`, and the Sentinel form."""
    spec = parse_sentinel(url)
    if spec is None:
        return aioredis.Redis.from_url(url, **kwargs)
    sentinel = aiosentinel.Sentinel(spec.sentinels,
                                    sentinel_kwargs=_sentinel_kwargs(spec, kwargs, AsyncRetry(NoBackoff(), 0)))
    client = sentinel.master_for(spec.service, redis_class=aioredis.Redis, connection_pool_class=AsyncFollowingPool,
                                 **_node_kwargs(spec, kwargs))
    client.auto_close_connection_pool = True
    return client


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """(broker URL, broker transport options) for Celery: kombu's own
    Sentinel form for ours, any other URL as it is."""
    spec = parse_sentinel(url)
    if spec is None:
        return url, {}
    userinfo = ""
    if spec.username is not None or spec.password is not None:
        userinfo = urllib.parse.quote(spec.username or "", safe="")
        if spec.password is not None:
            userinfo += ":" + urllib.parse.quote(spec.password, safe="")
        userinfo += "@"
    hosts = [f"[{h}]" if ":" in h else h for h, _ in spec.sentinels]
    broker = ";".join(f"sentinel://{userinfo}{h}:{p}/{spec.db}" for h, (_, p) in zip(hosts, spec.sentinels,
                                                                                       strict=True))
    options: dict[str, Any] = {"master_name": spec.service}
    if spec.sentinel_auth:
        options["sentinel_kwargs"] = dict(spec.sentinel_auth)
    return broker, options
