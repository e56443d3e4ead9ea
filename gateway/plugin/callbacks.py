"""LiteLLM callbacks of the plugin (`litellm_settings.callbacks:
gateway.plugin.callbacks.portal_callbacks`).

When a request ends, its reservation is released, its real cost is added to
the spend counters of key, project, team and organization (per budget
period), and a usage event is appended to the Redis stream the portal
consumes - all in one Lua script, so that counters and events agree. If
Redis is unreachable at that moment the settlement is kept in memory and
retried, so no usage is lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from typing import Any

import redis
from litellm.integrations.custom_logger import CustomLogger

from gateway.plugin import contract
from gateway.plugin.state import get_state

log = logging.getLogger("portal.gateway")
MAX_PENDING = 100_000


def portal_metadata(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    params = kwargs.get("litellm_params") or {}
    for holder in (params.get("metadata"), params.get("litellm_metadata")):
        if isinstance(holder, dict):
            meta = holder.get("user_api_key_metadata") or {}
            if isinstance(meta, dict) and "reservation" in (meta.get("portal") or {}):
                return meta["portal"]
    return None


def settle_args(portal: dict[str, Any], cost_nano: int, tokens: int, completion: int,
                event: dict[str, Any]) -> tuple[list[str], list[Any]]:
    now = dt.datetime.now(dt.UTC)
    keys = [contract.rate_keys(portal["key_id"], int(now.timestamp() // 60))[1], contract.USAGE_STREAM,
            contract.ALERTS_STREAM, contract.estimate_key(portal["group"])]
    args: list[Any] = [portal["reservation"], cost_nano, tokens, completion, len(portal["scopes"]),
                       json.dumps(event)]
    for scope, ident, label, soft, period in portal["scopes"]:
        keys += contract.budget_keys(scope, ident, label)
        end = contract.period_end(period, now)
        args += [-1 if soft is None else round(soft * contract.NANO),
                 int(end.timestamp()) + 7 * 86400 if end else 0, scope, ident, label]
    return keys, args


class PortalCallbacks(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[list, list]] = []
        self._retrying = False

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        portal = portal_metadata(kwargs)
        if portal is None:
            return
        slo = kwargs.get("standard_logging_object") or {}
        meta = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        prompt, completion = int(slo.get("prompt_tokens") or 0), int(slo.get("completion_tokens") or 0)
        cost = float(kwargs.get("response_cost") or slo.get("response_cost") or 0.0)
        latency = (end_time - start_time).total_seconds() * 1000 if start_time and end_time else 0.0
        event = self.event(portal, kwargs.get("litellm_call_id") or portal["reservation"], "success", 200, "",
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
        latency = (time.time() - portal["started"]) * 1000
        request_id = request_data.get("litellm_call_id") or portal["reservation"]
        event = self.event(portal, request_id, "error", status, type(original_exception).__name__, 0, 0, 0.0,
                           latency, deployment="", provider_model="")
        await self.settle(portal, 0.0, 0, -1, event)
        return None

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

    async def settle(self, portal: dict[str, Any], cost: float, tokens: int, completion: int,
                     event: dict[str, Any]) -> None:
        keys, args = settle_args(portal, round(cost * contract.NANO), tokens, completion, event)
        try:
            await get_state().run(contract.SETTLE, keys, args)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if len(self.pending) < MAX_PENDING:
                self.pending.append((keys, args))
            log.warning("gateway: Redis unreachable, %d settlement(s) kept to retry", len(self.pending))
            if not self._retrying:
                self._retrying = True
                asyncio.get_running_loop().create_task(self._retry_pending())

    async def _retry_pending(self) -> None:
        delay = 0.2
        try:
            while self.pending:
                await asyncio.sleep(delay)
                keys, args = self.pending[0]
                try:
                    await get_state().run(contract.SETTLE, keys, args)
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    delay = min(delay * 2, 5.0)
                    continue
                self.pending.pop(0)
                delay = 0.05
            log.info("gateway: pending settlements delivered")
        finally:
            self._retrying = False


portal_callbacks = PortalCallbacks()
