"""The plugin's version, the contract check and the gateway's health route.

The portal's full push writes the contract version it speaks into Redis
(`contract.CONTRACT`). The plugin reads it when the proxy's worker starts
(`install`, from LiteLLM's worker startup hook) and again every
CONTRACT_CHECK_SECONDS: while the portal's version is one this plugin cannot
serve (`contract.contract_problem`), it logs one CRITICAL line saying which
side to upgrade and answers every LLM and model-list request 503 with an
OpenAI-style error (code `contract_mismatch`) instead of misreading the
portal's documents. It keeps running, so that `GET /portal/health` shows why
and the gateway serves again as soon as the versions agree (no restart).

`GET /portal/health` needs no key and says only versions and state (no
secrets, no tenant data): 200 when the gateway can serve, 503 otherwise.
`manage.py doctor` and compose's health check read it. It is answered by an
ASGI layer in front of the guard (`guard.Guard`), installed last by
`gateway.plugin.install`.

Standard library, `redis` and `litellm` only."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import time
from typing import Any

from gateway.plugin import contract
from gateway.plugin.guard import INFO_ROUTES, ASGIApp, Receive, Scope, Send, respond, wrap_app
from gateway.plugin.requests import ROUTES, Refusal

log = logging.getLogger("portal.gateway")

PLUGIN_VERSION = "0.1.0"  # the portal's release (pyproject.toml); a test keeps them equal
HEALTH_PATH = "/portal/health"
CONTRACT_CHECK_SECONDS = float(os.environ.get("PORTAL_GATEWAY_CONTRACT_CHECK_SECONDS", "15"))
REDIS_TIMEOUT = 2.0


class ContractWatch:
    """What this process last read of the portal's contract record."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.portal_version: int | None = None
        self.checked_at = 0.0

    def update(self, raw: str | bytes | None) -> None:
        problem = contract.contract_problem(raw)
        self.portal_version = contract.contract_version(raw)
        if problem != self.problem:
            if problem:
                log.critical("gateway refuses requests (503 contract_mismatch): %s", problem)
            else:
                log.warning("gateway contract check passed again (portal contract %s, plugin %s to %s)",
                            self.portal_version, contract.CONTRACT_OLDEST, contract.CONTRACT_VERSION)
        self.problem = problem
        self.checked_at = time.time()

    def refusal(self) -> Refusal:
        return Refusal(503, f"This gateway cannot serve requests: {self.problem}.", "contract_mismatch",
                       kind="service_unavailable")


watch = ContractWatch()


def check_now(url: str | None = None) -> None:
    """Read the contract record synchronously (at the worker's start, before it serves). Redis
    unreachable: nothing is decided; the periodic check reads it later."""
    import redis

    url = url or os.environ.get("PORTAL_GATEWAY_REDIS_URL") or os.environ.get("REDIS_URL") or \
        "redis://127.0.0.1:6379/0"
    try:  # the plugin's connection factory (Sentinel URLs too), where this release has it
        redisconn: Any = importlib.import_module("gateway.plugin.redisconn")
        client = redisconn.from_url(url, decode_responses=True, socket_timeout=REDIS_TIMEOUT,
                                    socket_connect_timeout=REDIS_TIMEOUT)
    except ImportError:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=REDIS_TIMEOUT,
                                      socket_connect_timeout=REDIS_TIMEOUT)
    try:
        watch.update(client.get(contract.CONTRACT))
    except redis.RedisError as exc:
        log.warning("contract check at start: Redis unreachable (%s); checking again in %.0f s",
                    type(exc).__name__, CONTRACT_CHECK_SECONDS)
    finally:
        client.close()


async def check_async() -> tuple[bool, bool]:
    """Read the contract record and whether the portal's state is loaded: (redis ok, state loaded)."""
    from gateway.plugin.state import get_state

    r = get_state().r
    try:
        raw, loaded = await asyncio.wait_for(asyncio.gather(r.get(contract.CONTRACT), r.exists(contract.EPOCH)),
                                             REDIS_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any Redis failure is "Redis unavailable"
        log.warning("contract check: Redis unreachable (%s)", type(exc).__name__)
        return False, False
    watch.update(raw)
    return True, bool(loaded)


async def keep_checking() -> None:
    while True:
        await asyncio.sleep(CONTRACT_CHECK_SECONDS)
        await check_async()


def litellm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litellm")
    except PackageNotFoundError:
        return "unknown"


async def health() -> tuple[int, dict[str, Any]]:
    redis_ok, loaded = await check_async()
    body: dict[str, Any] = {
        "status": "ok", "plugin_version": PLUGIN_VERSION, "contract_version": contract.CONTRACT_VERSION,
        "contract_oldest": contract.CONTRACT_OLDEST, "portal_contract_version": watch.portal_version,
        "contract_ok": watch.problem is None, "redis": "ok" if redis_ok else "fail", "state_loaded": loaded,
        "litellm_version": litellm_version(), "time": round(time.time(), 3)}
    if watch.problem is not None:
        body.update(status="contract_mismatch", message=watch.problem)
    elif not redis_ok:
        body.update(status="redis_unavailable", message="the gateway cannot reach Redis "
                    "(PORTAL_GATEWAY_REDIS_URL): check that Redis runs and the gateway's network reaches it")
    return (200 if body["status"] == "ok" else 503), body


async def answer_json(send: Send, status: int, body: dict[str, Any], head: bool = False) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b"" if head else payload})


class Front:
    """In front of the guard: the health route, and the contract's refusal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope.get("path", "").rstrip("/") or "/"
        if route == HEALTH_PATH:
            if scope.get("method") not in ("GET", "HEAD"):
                await respond(send, Refusal(405, f"Use GET for {HEALTH_PATH}.", "method_not_allowed"))
                return
            status, body = await health()
            await answer_json(send, status, body, head=scope.get("method") == "HEAD")
        elif watch.problem is not None and (route in ROUTES or route in INFO_ROUTES):
            await respond(send, watch.refusal())
        else:
            await self.app(scope, receive, send)


_task: asyncio.Task[None] | None = None


def install() -> None:
    """Put the health route and the contract check in front of the guard (after `guard.install`), check
    the contract now and keep checking it; a second call does nothing."""
    global _task
    if wrap_app("_portal_front", Front):
        check_now()
    if _task is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # installed outside a running proxy (a test): no periodic check
            return
        _task = loop.create_task(keep_checking())
