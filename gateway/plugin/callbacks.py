"""LiteLLM callbacks of the plugin (`litellm_settings.callbacks:
gateway.plugin.callbacks.portal_callbacks`).

When a request ends, its reservation is released, its real cost is added to
the spend counters of key, project, team and organization (every period),
and a usage event is appended to the Redis stream the portal consumes - all
in one Lua script, once per request, so that counters and events agree.

Every served request settles:
- `no-log` and LiteLLM's other logging switches are refused in the body
  (`requests`) and, besides, LiteLLM is told to run callbacks whatever a
  request says;
- a request that ends without a callback (a client that hangs up mid-stream,
  an error LiteLLM does not report) is settled as an error by the watch,
  `SETTLE_GRACE` seconds after its response ended;
- when Redis cannot take a settlement (unreachable, out of memory, read-only)
  it goes to a spool on disk (`spool.Spool`), replayed when Redis is back,
  also after a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import math
import os
import time
from collections import OrderedDict
from typing import Any

import litellm
import redis
from litellm.integrations.custom_logger import CustomLogger

from gateway.plugin import contract
from gateway.plugin.spool import Spool
from gateway.plugin.state import get_state

log = logging.getLogger("portal.gateway")
SETTLE_GRACE = float(os.environ.get("PORTAL_GATEWAY_SETTLE_GRACE", "20"))
HOLD_TTL_MS = int(os.environ.get("PORTAL_GATEWAY_HOLD_TTL", "900")) * 1000
DEFAULT_COMPLETION_TOKENS = int(os.environ.get("PORTAL_GATEWAY_COMPLETION_ESTIMATE", "256"))  # as auth's
RECENT = 50_000  # settled reservations remembered in memory, so that the watch skips them

# `no-log: true` in a body skips every callback whose class name lacks `_PROXY_` (the body policy
# refuses the field; this is for any path that sets it anyway).
litellm.global_disable_no_log_param = True


def portal_metadata(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    params = kwargs.get("litellm_params") or {}
    for holder in (params.get("metadata"), params.get("litellm_metadata")):
        if isinstance(holder, dict):
            meta = holder.get("user_api_key_metadata") or {}
            if isinstance(meta, dict) and "reservation" in (meta.get("portal") or {}):
                return meta["portal"]
    return None


@functools.lru_cache(maxsize=4)
def calendar(day: dt.date) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The period labels of a UTC day's spend counters (in PERIODS' order), and when its daily, weekly
    and monthly counters expire: the same for every request of the day, so worked out once a day."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    labels = tuple(contract.period_start(p, start) for p in contract.PERIODS)
    ends = [contract.period_end(p, start) for p in contract.PERIODS[:3]]
    return labels, tuple(int(end.timestamp()) + 7 * 86400 for end in ends if end is not None)


@functools.lru_cache(maxsize=4096)
def scope_keys(scope: str, ident: int, label: str, labels: tuple[str, ...]) -> tuple[str, ...]:
    """A scope's keys in SETTLE: held, holds, holdexp of its budget period, then its spend counters."""
    return (*contract.budget_keys(scope, ident, label)[1:], *(contract.spend_key(scope, ident, p) for p in labels))


def settle_args(portal: dict[str, Any], cost_nano: int, tokens: int, completion: int,
                event: dict[str, Any], now: dt.datetime | None = None) -> tuple[list[str], list[Any]]:
    now = now or dt.datetime.now(dt.UTC)
    labels, expiries = calendar(now.astimezone(dt.UTC).date())
    keys = [contract.rate_keys(portal["key_id"], int(now.timestamp() // 60))[1], contract.USAGE_STREAM,
            contract.ALERTS_STREAM, contract.estimate_key(portal["group"]), contract.settled_key(portal["reservation"])]
    args: list[Any] = [portal["reservation"], cost_nano, tokens, completion, len(portal["scopes"]),
                       json.dumps(event), 2 * HOLD_TTL_MS, *expiries]
    for scope, ident, label, soft, period in portal["scopes"]:
        keys += scope_keys(scope, ident, label, labels)
        which = contract.PERIODS.index(period) + 1 if period in contract.PERIODS else 4
        args += [-1 if soft is None else round(soft * contract.NANO), scope, ident, label, which]
    return keys, args


def release_keys(portal: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for scope, ident, label, _soft, _period in portal["scopes"]:
        keys += contract.budget_keys(scope, ident, label)[1:]
    return keys


def reported_cost(*values: Any) -> float:
    """The first cost LiteLLM reported that is a positive finite number, else 0."""
    for value in values:
        try:
            cost = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(cost) and cost > 0:
            return cost
    return 0.0


def priced(group: str, prompt: int, completion: int) -> float:
    """A served request's cost at the portal's own prices for its model group (the ones its
    reservation used), for when LiteLLM reports none: a deployment it cannot price is not free."""
    in_price, out_price = get_state().prices.get(group, (0.0, 0.0))
    return prompt * in_price + completion * out_price


def held_keys(portal: dict[str, Any]) -> list[str]:
    keys = [contract.estimate_key(portal["group"])]
    for scope, ident, label, _soft, _period in portal["scopes"]:
        keys.append(contract.budget_keys(scope, ident, label)[2])
    return keys


class PortalCallbacks(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.spool = Spool()
        self._replaying = False
        self.recent: OrderedDict[str, None] = OrderedDict()  # reservations settled by this process
        self.watched: dict[str, tuple[float, dict[str, Any]]] = {}  # ended, not settled: (when, portal)
        self._watching = False

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        portal = portal_metadata(kwargs)
        if portal is None:
            return
        slo = kwargs.get("standard_logging_object") or {}
        meta = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        prompt, completion = int(slo.get("prompt_tokens") or 0), int(slo.get("completion_tokens") or 0)
        cost = reported_cost(kwargs.get("response_cost"), slo.get("response_cost"))
        if cost <= 0 and prompt + completion > 0:
            cost = priced(portal["group"], prompt, completion)  # LiteLLM could not price it: the portal can
        latency = (end_time - start_time).total_seconds() * 1000 if start_time and end_time else 0.0
        # Named by the gateway's reservation, never by LiteLLM's call id (a client may choose that one).
        event = self.event(portal, portal["reservation"], "success", 200, "",
                           prompt, completion, cost, latency,
                           deployment=(meta.get("model_info") or {}).get("id") or slo.get("model_id") or "",
                           provider_model=str(kwargs.get("model") or ""))
        await self.settle(portal, cost, prompt + completion, completion, event)

    async def async_post_call_failure_hook(self, request_data: dict[str, Any], original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> None:
        portal = ((getattr(user_api_key_dict, "metadata", None) or {}).get("portal") or {})
        if "reservation" not in portal:
            return None  # refused before a reservation: nothing to settle
        status: Any = getattr(original_exception, "status_code", None) or getattr(original_exception, "code", 500)
        try:
            status = int(status)
        except (TypeError, ValueError):
            status = 500
        await self.settle_error(portal, portal["reservation"], status, type(original_exception).__name__)
        return None

    async def settle_error(self, portal: dict[str, Any], request_id: str, status: int, error_class: str) -> None:
        latency = (time.time() - portal["started"]) * 1000
        event = self.event(portal, request_id, "error", status, error_class, 0, 0, 0.0, latency, deployment="",
                           provider_model="")
        await self.settle(portal, 0.0, 0, -1, event)

    async def settle_answered(self, portal: dict[str, Any], request_id: str) -> None:
        """A request whose answer began with a 2xx but that no callback reported (a stream the
        client left, a usage LiteLLM lost): it was served, so it is charged what its reservation
        held, never released at zero cost."""
        _, out_price = get_state().prices.get(portal["group"], (0.0, 0.0))
        try:
            held = int(await get_state().run(contract.HELD_ESTIMATE, held_keys(portal), [
                request_id, out_price * contract.NANO, DEFAULT_COMPLETION_TOKENS]))
        except (redis.RedisError, OSError) as exc:
            # Without Redis the hold cannot be read: charge the usual answer, so that it is not free.
            log.warning("gateway: could not read a held estimate (%s)", type(exc).__name__)
            held = math.ceil(DEFAULT_COMPLETION_TOKENS * out_price * contract.NANO)
        cost = held / contract.NANO
        latency = (time.time() - portal["started"]) * 1000
        event = self.event(portal, request_id, "success", 200, "Unmetered", 0, 0, cost, latency, deployment="",
                           provider_model="")
        await self.settle(portal, cost, 0, -1, event)

    @staticmethod
    def event(portal: dict[str, Any], request_id: str, status: str, status_code: int, error_class: str,
              prompt: int, completion: int, cost: float, latency_ms: float, *, deployment: str,
              provider_model: str) -> dict[str, Any]:
        return {
            "request_id": request_id, "ts": time.time(), "key_id": portal["key_id"], "key_hash": portal["key_hash"],
            "org": portal["org"], "team": portal["team"], "project": portal["project"], "owner": portal["owner"],
            "route": portal["route"], "group": portal["group"], "deployment": deployment,
            "provider_model": provider_model, "prompt_tokens": prompt, "completion_tokens": completion,
            "cost_nano": round(cost * contract.NANO), "latency_ms": round(latency_ms, 1), "status": status,
            "status_code": status_code, "error_class": error_class, "trace_id": portal.get("trace_id", ""),
        }

    # Settling, durably ----------------------------------------------------------------------

    async def settle(self, portal: dict[str, Any], cost: float, tokens: int, completion: int,
                     event: dict[str, Any]) -> None:
        self._remember(portal["reservation"])
        keys, args = settle_args(portal, round(cost * contract.NANO), tokens, completion, event)
        if self.spool.pending():
            self.spool.put(keys, args)  # keep the order: older settlements first
            self._start_replay()
            return
        try:
            await get_state().run(contract.SETTLE, keys, args)
        except (redis.RedisError, OSError) as exc:
            self.spool.put(keys, args)
            log.warning("gateway: Redis cannot take settlements (%s); %d kept in the spool to replay",
                        type(exc).__name__, self.spool.pending())
            self._start_replay()

    def _start_replay(self) -> None:
        if not self._replaying:
            self._replaying = True
            asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        delay = 0.2
        try:
            while self.spool.pending():
                batch = self.spool.oldest(100)
                for row_id, keys, args in batch:
                    try:
                        await get_state().run(contract.SETTLE, keys, args)
                    except (redis.RedisError, OSError):
                        break
                    self.spool.done(row_id)
                else:
                    delay = 0.05
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            log.info("gateway: spooled settlements delivered")
        finally:
            self._replaying = False

    def resume(self) -> None:
        """Replay what an earlier run of this proxy spooled (called on the first request)."""
        if self.spool.pending():
            self._start_replay()

    # Requests that end without a callback ------------------------------------------------------

    def _remember(self, reservation: str) -> None:
        self.watched.pop(reservation, None)
        self.recent[reservation] = None
        if len(self.recent) > RECENT:
            self.recent.popitem(last=False)

    def request_ended(self, portal: dict[str, Any]) -> None:
        """Called when a request's response is over (or the client left): if no callback settles it
        within SETTLE_GRACE seconds, the watch does, as an error."""
        reservation = portal.get("reservation")
        if not reservation or reservation in self.recent:
            return
        self.watched[reservation] = (time.monotonic(), portal)
        if not self._watching:
            self._watching = True
            asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while self.watched:
                await asyncio.sleep(min(SETTLE_GRACE, 1.0))
                due = time.monotonic() - SETTLE_GRACE
                for reservation, (ended, portal) in list(self.watched.items()):
                    if ended <= due and reservation in self.watched:
                        if portal.get("answered"):  # set by the guard when a 2xx answer started
                            await self.settle_answered(portal, reservation)
                        else:
                            await self.settle_error(portal, reservation, 499, "NotSettled")
        finally:
            self._watching = False


async def release(portal: dict[str, Any]) -> None:
    """Give back a reservation of a request that was refused after it was made."""
    try:
        await get_state().run(contract.RELEASE, release_keys(portal), [portal["reservation"]])
    except (redis.RedisError, OSError) as exc:
        log.warning("gateway: could not release a reservation (%s); it lapses by itself", type(exc).__name__)


portal_callbacks = PortalCallbacks()
