"""Helpers for end-to-end tests: OpenAI clients on the proxies, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai

from tests.factories import Tenant


def client(gateway_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0, timeout=30)


def chat(gateway_url: str, key: str, model: str = "chat", **kwargs: Any) -> Any:
    return client(gateway_url, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}], **kwargs)


def until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> float:
    """Seconds until predicate() is truthy; raises after timeout."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(interval)


def issue_key(t: Tenant, role: str = "owner", **body: Any) -> dict[str, Any]:
    payload = {"name": "e2e key", "team": t.team.pk, "project": t.project.pk} | body
    response = t.client(role).post(t.url("keys/"), payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def usage(t: Tenant, **params: Any) -> dict[str, Any]:
    response = t.client("owner").get(t.url("usage/"), params)
    assert response.status_code == 200, response.content
    return response.json()


def status_of(call: Callable[[], Any]) -> tuple[int, str]:
    """(HTTP status, error message) of an OpenAI SDK call."""
    try:
        call()
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = (body.get("error") or body).get("message", "") if isinstance(body, dict) else str(body)
        return exc.status_code, message
    return 200, ""
