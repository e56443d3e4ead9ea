"""The plugin's process-wide state: Redis clients, an in-process cache of the
documents the portal pushed, kept fresh by the portal's pub/sub events, and
the hot swap of LiteLLM's model list. Its Redis calls are where the
gateway's Redis metrics are taken (`metrics`: the reservation and settlement
round trips, errors by operation).

Standard library, `redis` and `litellm` only: this runs inside the stock
LiteLLM proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from typing import Any

import redis
import redis.asyncio as aioredis

from gateway.plugin import contract, metrics, redisconn, sealed

log = logging.getLogger("portal.gateway")

CACHE_TTL = float(os.environ.get("PORTAL_GATEWAY_CACHE_TTL", "60"))
# Documents that exist, and names that do not (random bearer tokens), are bounded separately, so that
# a flood of unknown keys can neither grow the proxy's memory nor push the real keys out of the cache.
CACHE_MAX = int(os.environ.get("PORTAL_GATEWAY_CACHE_MAX", "100000"))
NEGATIVE_CACHE_MAX = int(os.environ.get("PORTAL_GATEWAY_NEGATIVE_CACHE_MAX", "10000"))
# A silently dropped connection to Redis is noticed within ~25 s (then everything cached is dropped).
KEEPALIVE = {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}
MISSING = object()
SCRIPT_OPERATIONS = {contract.RESERVE: "reserve", contract.SETTLE: "settle", contract.RELEASE: "release",
                     contract.HELD_ESTIMATE: "held_estimate"}  # the `operation` label of Redis errors


class DocumentCache:
    """Documents by Redis key, each kept at most CACHE_TTL seconds and
    dropped at once when the portal announces a change; at most `max_docs`
    documents and `max_missing` names without a document, the least recently
    used going first.

    A read that raced with an invalidation is not cached: the generation
    counter moves on every event, and a result is only stored if no event
    arrived while it was being read."""

    def __init__(self, max_docs: int = CACHE_MAX, max_missing: int = NEGATIVE_CACHE_MAX) -> None:
        self._docs: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()
        self.max_docs, self.max_missing = max_docs, max_missing
        self.generation = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._docs) + len(self._missing)

    def get(self, name: str) -> Any:
        now = time.monotonic()
        hit = self._docs.get(name)
        if hit is not None and hit[0] >= now:
            with self._lock:
                if name in self._docs:
                    self._docs.move_to_end(name)
            return hit[1]
        until = self._missing.get(name)
        if until is not None and until >= now:
            return None
        return MISSING

    def put(self, name: str, value: Any, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            until = time.monotonic() + CACHE_TTL
            store: OrderedDict[str, Any] = self._docs if value is not None else self._missing
            store[name] = (until, value) if value is not None else until
            store.move_to_end(name)
            while len(store) > (self.max_docs if value is not None else self.max_missing):
                store.popitem(last=False)

    def drop(self, *names: str) -> None:
        with self._lock:
            self.generation += 1
            for name in names:
                self._docs.pop(name, None)
                self._missing.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._docs.clear()
            self._missing.clear()


class GatewayState:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.r: aioredis.Redis = redisconn.async_from_url(redis_url, decode_responses=True, socket_timeout=2,
                                         socket_connect_timeout=2, health_check_interval=10, retry_on_timeout=True)
        self.cache = DocumentCache()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.models_version = -1
        self.models: dict[str, Any] = {}
        self.prices: dict[str, tuple[float, float]] = {}  # model group -> (input, output) USD per token
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._models_lock: asyncio.Lock | None = None
        self.connected = threading.Event()
        self._scripts: dict[str, str] = {}

    # Documents ---------------------------------------------------------

    async def doc(self, name: str) -> dict[str, Any] | None:
        cached = self.cache.get(name)
        if cached is not MISSING:
            return cached
        generation = self.cache.generation
        try:
            raw = await self.r.get(name)
        except (redis.RedisError, OSError):
            metrics.redis_error("read")
            raise
        value = json.loads(raw) if raw else None
        self.cache.put(name, value, generation)
        return value

    async def run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA a Lua script (timed: reservations and settlements)."""
        operation = SCRIPT_OPERATIONS.get(source, "script")
        started = time.perf_counter()
        try:
            result = await self._run(source, keys, args)
        except (redis.RedisError, OSError):
            metrics.redis_error(operation)
            raise
        if operation == "reserve":
            metrics.reserved(time.perf_counter() - started)
        elif operation == "settle":
            metrics.settled(time.perf_counter() - started)
        return result

    async def _run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Load the script when Redis does not know it (first use, or after a
        restart emptied its script cache)."""
        sha = self._scripts.get(source)
        if sha is not None:
            try:
                return await self.r.evalsha(sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                pass
        sha = await self.r.script_load(source)
        self._scripts[source] = sha
        return await self.r.evalsha(sha, len(keys), *keys, *args)

    async def state_loaded(self) -> bool:
        """Whether the portal has pushed its state into this Redis (after a
        Redis restart without persistence, it has not, until it re-pushes)."""
        try:
            return bool(await self.r.exists(contract.EPOCH))
        except (redis.RedisError, OSError):
            metrics.redis_error("read")
            raise

    # Events ------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start listening to the portal's events; True the first time."""
        if self._listener is not None:
            return False
        self.loop = loop
        self._models_lock = asyncio.Lock()
        self._listener = threading.Thread(target=self._listen, name="portal-gateway-events", daemon=True)
        self._listener.start()
        return True

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            client = redisconn.from_url(self.redis_url, decode_responses=True, socket_connect_timeout=2,
                                          socket_keepalive=True, socket_keepalive_options=KEEPALIVE)
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                pubsub.subscribe(contract.EVENTS)
                # Events may have been missed while (re)connecting: forget everything.
                self.cache.clear()
                self._schedule_models_reload()
                self.connected.set()
                backoff = 0.1
                log.info("gateway events: listening on %s", redisconn.node_of(pubsub.connection))
                checked = time.monotonic()
                while not self._stop.is_set():
                    # Waits in the socket (without holding the GIL) for at most a second; every second it
                    # checks that its node is still the primary. Behind Sentinel, a planned failover leaves
                    # the old one up for seconds, and once it is a replica it hears the new primary's events
                    # only after resynchronising: the portal publishes on the new one at once.
                    message = pubsub.get_message(timeout=redisconn.PRIMARY_CHECK_SECONDS)
                    if time.monotonic() - checked >= redisconn.PRIMARY_CHECK_SECONDS:
                        checked = time.monotonic()
                        if redisconn.primary_moved(client, pubsub.connection):
                            log.warning("gateway events: the Redis primary moved; listening on the new one")
                            break
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._handle(message["data"])
                    elif message["type"] == "subscribe":  # also when redis-py re-subscribed on a new connection
                        self.cache.clear()  # (a failover, a dropped socket): events may have been missed
                        self._schedule_models_reload()
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                metrics.redis_error("events")
                log.warning("gateway events: Redis unreachable (%s); retrying", type(exc).__name__)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    pass

    def _handle(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        kind, ident = event.get("type"), event.get("id")
        if kind == "key":
            names = [contract.key_doc(ident)] + [contract.hash_doc(h) for h in event.get("hashes", [])]
            self.cache.drop(*names)
        elif kind == "org":
            self.cache.drop(contract.org_doc(ident))
        elif kind == "team":
            self.cache.drop(contract.team_doc(ident))
        elif kind == "project":
            self.cache.drop(contract.project_doc(ident))
        elif kind == "models":
            self._schedule_models_reload()
        elif kind == "reset":
            self.cache.clear()
            self._schedule_models_reload()

    def _schedule_models_reload(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self.reload_models(), self.loop)
            future.add_done_callback(_log_failure)

    # LiteLLM's model list ----------------------------------------------

    async def reload_models(self, force: bool = False) -> None:
        """Swap the running proxy's model list, fallbacks and retries for
        what the portal pushed, without a restart."""
        assert self._models_lock is not None
        async with self._models_lock:
            raw = await self.r.get(contract.MODELS)
            if not raw:
                return
            doc = json.loads(raw)
            # Always the latest document (read now), so any other version is
            # newer - even a smaller one, after Redis lost its counter.
            if doc.get("v", 0) == self.models_version and not force:
                return
            apply_model_list(doc)
            self.models = doc
            self.prices = group_prices(doc)
            self.models_version = doc.get("v", 0)
            log.info("gateway: model list v%s applied (%d deployments)", self.models_version,
                     len(doc.get("model_list", [])))


def _log_failure(future: Any) -> None:
    exc = future.exception()
    if isinstance(exc, (redis.RedisError, OSError)):
        metrics.redis_error("models")
    if exc is not None:
        log.error("gateway: could not apply the model list: %s: %s", type(exc).__name__, exc)


def group_prices(doc: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The highest price per token in each model group, for budget estimates."""
    import litellm

    prices: dict[str, tuple[float, float]] = {}
    for entry in doc.get("model_list", []):
        params = entry["litellm_params"]
        inp, out = params.get("input_cost_per_token"), params.get("output_cost_per_token")
        if inp is None or out is None:
            known = litellm.model_cost.get(params["model"].split("/", 1)[-1], {})
            inp = inp if inp is not None else known.get("input_cost_per_token", 0.0)
            out = out if out is not None else known.get("output_cost_per_token", 0.0)
        old = prices.get(entry["model_name"], (0.0, 0.0))
        prices[entry["model_name"]] = (max(old[0], float(inp or 0)), max(old[1], float(out or 0)))
    return prices


def retry_policy(retries: int) -> dict[str, int]:
    """A route's retries, for every error a retry can fix (not the caller's own mistakes)."""
    return {"DefaultRetries": retries, "BadRequestErrorRetries": 0, "ContentPolicyViolationErrorRetries": 0}


def apply_model_list(doc: dict[str, Any]) -> None:
    """Hand LiteLLM the portal's model list, its secrets unsealed in memory
    (gateway/plugin/sealed.py); no deployment with a secret reference in it is
    applied as it is, nor one this proxy cannot unseal: those answer a clear 503."""
    import litellm
    from litellm.proxy import proxy_server
    from litellm.types.router import RetryPolicy

    sealer, problem = sealed.proxy_sealer()
    if problem is not None:
        log.error("gateway: %s: deployments with a provider secret answer 503 until the proxy is restarted "
                  "with the portal's GATEWAY_SEALING_KEY", problem)
    sealed.register_unavailable_provider()
    model_list = [sealed.unseal_entry(entry, sealer) for entry in doc.get("model_list", [])]
    policies = {group: RetryPolicy(**retry_policy(n)) for group, n in doc.get("retries", {}).items()}
    router = proxy_server.llm_router
    if router is None:
        router = litellm.Router(model_list=model_list, fallbacks=doc.get("fallbacks", []),
                                model_group_retry_policy=policies)
        proxy_server.llm_router = router
    else:
        router.set_model_list(model_list)
        router.fallbacks = doc.get("fallbacks", [])
        router.model_group_retry_policy = policies
    proxy_server.llm_model_list = router.get_model_list() or []


_state: GatewayState | None = None
_state_lock = threading.Lock()


def get_state() -> GatewayState:
    global _state
    if _state is None:
        with _state_lock:
            if _state is None:
                url = os.environ.get("PORTAL_GATEWAY_REDIS_URL") or os.environ.get("REDIS_URL") or \
                    "redis://127.0.0.1:6379/0"
                _state = GatewayState(url)
    return _state
