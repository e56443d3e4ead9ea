"""All HTTP to LiteLLM's management API: one client with master-key auth,
timeouts and bounded retries, and the errors it raises."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from django.conf import settings

from gateway.backends.base import GatewayError
from portal.logs import request_id_headers

log = logging.getLogger("gateway.litellm_admin")
JSON = dict[str, Any]

_SK = re.compile(r"sk-[A-Za-z0-9_\-*.]{3,}")
_local = threading.local()


class LiteLLMAdminError(GatewayError):
    """LiteLLM refused or could not be reached. `permanent`: retrying the same
    request will not help (a 4xx); otherwise it may (network, 429, 5xx)."""


class LiteLLMNotFound(LiteLLMAdminError):
    """A 404: the object is not in LiteLLM (deletes treat this as done)."""


class AdminClient:
    """Master-key auth, timeouts, and bounded retries with exponential backoff
    (honouring Retry-After) on network errors, 429 and 5xx. Never logs bodies:
    they hold key plaintext (only `/key/generate`) and provider secrets (`/model/*`)."""

    attempts = 3
    backoff = 0.5
    max_wait = 30.0
    timeout = httpx.Timeout(30.0, connect=5.0)  # /model/* reload LiteLLM's router: slow

    def __init__(self, *, base_url: str | None = None, master_key: str | None = None,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        master_key = settings.LITELLM_MASTER_KEY if master_key is None else master_key
        if not master_key:
            raise LiteLLMAdminError("LITELLM_MASTER_KEY is not set", permanent=True)
        self.sleep = sleep
        self.http = httpx.Client(base_url=base_url or settings.LITELLM_ADMIN_URL, timeout=self.timeout,
                                 headers={"Authorization": f"Bearer {master_key}"}, transport=transport)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: JSON) -> Any:
        return self.request("POST", path, body=body)

    def request(self, method: str, path: str, *, body: JSON | None = None, params: JSON | None = None) -> Any:
        error = LiteLLMAdminError(f"{method} {path}: not attempted", permanent=False)
        for attempt in range(1, self.attempts + 1):
            wait = self.backoff * 2 ** (attempt - 1)
            try:
                # X-Request-ID: the request (or task) that made the call, also in the gateway's log lines
                response = self.http.request(method, path, json=body, params=params, headers=request_id_headers())
            except httpx.TransportError as exc:
                error = LiteLLMAdminError(f"{method} {path}: LiteLLM unreachable ({type(exc).__name__})",
                                          permanent=False)
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                error = _error(method, path, response)
                if error.permanent:
                    raise error
                wait = _retry_after(response) or wait
            if attempt < self.attempts:
                log.warning("LiteLLM %s %s failed (%s); retry %d in %.1fs", method, path, error.status or "network",
                            attempt, min(wait, self.max_wait))
                self.sleep(min(wait, self.max_wait))
        raise error


def _error(method: str, path: str, response: httpx.Response) -> LiteLLMAdminError:
    status = response.status_code
    message = f"{method} {path}: LiteLLM answered {status}: {_message(response)}"
    if status == 404:
        return LiteLLMNotFound(message, permanent=True, status=status)
    return LiteLLMAdminError(message, permanent=status != 429 and status < 500, status=status)


def _message(response: httpx.Response) -> str:
    """LiteLLM's error text without anything secret: FastAPI's 422 echoes the
    offending input (maybe a key), so only its locations and messages are kept."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    detail = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if isinstance(detail, list):
        text = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in detail
                         if isinstance(e, dict))
    elif isinstance(detail, dict):
        text = str(detail.get("message", detail.get("error", "")))
    else:
        text = str(detail)
    return _SK.sub("sk-***", text)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def shared_client() -> AdminClient:
    """One client (one connection pool) per thread and configuration."""
    config = (settings.LITELLM_ADMIN_URL, settings.LITELLM_MASTER_KEY)
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != config:
        _local.client = cached = (config, AdminClient())
    return cached[1]
