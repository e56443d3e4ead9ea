"""Calls from the portal's workers through the gateway (judges, benchmarks),
with the project's service key: budgeted and visible like any other use.

Each call carries a W3C `traceparent` with a fresh trace id, so the call's
Langfuse trace (if the project has Langfuse) and the portal's records share
it. Rate limits (429 with Retry-After) and transient errors are retried a
bounded number of times; a budget refusal is final. With a `deadline`
(time.monotonic()), the whole call, retries included, ends by it: each
attempt's timeout is what is left, and no retry starts that could not."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import openai
from django.conf import settings

from portal.logs import request_id_headers

log = logging.getLogger(__name__)
PORTAL_TAG = "portal-evaluation"


class GatewayCallError(Exception):
    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False,
                 budget: bool = False) -> None:
        super().__init__(message)
        self.status, self.permanent, self.budget = status, permanent, budget


@dataclass
class ToolCall:
    """One tool call of an assistant message, as the model sent it (`arguments`: its JSON text, unparsed)."""

    id: str
    name: str
    arguments: str


@dataclass
class Completion:
    content: str
    tool_arguments: str | None  # the first tool call's arguments (judges ask for one function)
    cost: float
    latency_ms: float
    trace_id: str
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[ToolCall] = field(default_factory=list)  # every tool call of the message, in order
    finish_reason: str = ""


class GatewayClient:
    def __init__(self, api_key: str, *, base_url: str | None = None, timeout: float = 120.0, max_retries: int = 3,
                 backoff: float = 0.5, deadline: float | None = None) -> None:
        self.client = openai.OpenAI(base_url=f"{base_url or settings.GATEWAY_INTERNAL_URL}/v1", api_key=api_key,
                                    timeout=timeout, max_retries=0)
        self.timeout, self.max_retries, self.backoff, self.deadline = timeout, max_retries, backoff, deadline

    def chat(self, model: str, messages: list[dict[str, Any]], *, purpose: str = "judge", **params: Any) -> Completion:
        """`purpose` names the call's Langfuse trace (`portal-<purpose>`) and tags it
        `portal-evaluation`, so that evaluations never evaluate their own calls. Tool calling:
        `tools=[...]` and `tool_choice` pass through in `params`; the answer's `tool_calls` hold them all."""
        trace_id = uuid.uuid4().hex
        # X-Request-ID: the request or task that made the call, so the gateway's log lines carry it too
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", **request_id_headers()}
        params.setdefault("extra_body", {})["metadata"] = {"trace_name": f"portal-{purpose}", "tags": [PORTAL_TAG]}
        attempt = 0
        while True:
            started = time.perf_counter()
            if self.deadline is not None:
                params["timeout"] = max(0.1, min(self.timeout, self.deadline - time.monotonic()))
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=model, messages=messages, extra_headers=headers, **params)  # type: ignore[arg-type]
            except openai.APIStatusError as exc:
                error = self._error(exc)
                delay = self._retry_after(exc) or self.backoff * 2 ** attempt
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                error = GatewayCallError(f"The gateway did not answer ({type(exc).__name__}).")
                delay = self.backoff * 2 ** attempt
            else:
                return self._completion(raw, trace_id, started)
            delay = min(delay, 30.0)
            late = self.deadline is not None and time.monotonic() + delay + 0.5 >= self.deadline
            if error.permanent or attempt >= self.max_retries or late:
                raise error
            attempt += 1
            time.sleep(delay)

    @staticmethod
    def _completion(raw: Any, trace_id: str, started: float) -> Completion:
        response = raw.parse()
        choice = response.choices[0]
        message = choice.message
        calls = [ToolCall(id=str(getattr(c, "id", "") or ""), name=str(getattr(c.function, "name", "") or ""),
                          arguments=getattr(c.function, "arguments", None) or "")
                 for c in (getattr(message, "tool_calls", None) or []) if getattr(c, "function", None) is not None]
        usage = response.usage
        return Completion(
            content=message.content or "", tool_arguments=calls[0].arguments if calls else None,
            cost=float(raw.headers.get("x-litellm-response-cost") or 0.0),
            latency_ms=(time.perf_counter() - started) * 1000, trace_id=trace_id,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            tool_calls=calls, finish_reason=str(getattr(choice, "finish_reason", "") or ""))

    @staticmethod
    def _retry_after(exc: openai.APIStatusError) -> float | None:
        try:
            return float(exc.response.headers.get("retry-after", ""))
        except ValueError:
            return None

    @staticmethod
    def _error(exc: openai.APIStatusError) -> GatewayCallError:
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        message = (err.get("message") if isinstance(err, dict) else None) or str(exc)
        budget = exc.status_code == 429 and isinstance(err, dict) and err.get("type") == "budget_exceeded"
        permanent = budget or (400 <= exc.status_code < 500 and exc.status_code not in (408, 409, 429))
        return GatewayCallError(message, status=exc.status_code, permanent=permanent, budget=budget)
