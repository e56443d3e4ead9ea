"""A hostile tenant against the gateway's request surface (issue 8, findings 2, 3, 8, 9): control
fields in the body, routes beside the LLM API, the master key, malformed bodies, Redis faults,
reservations left behind. Two real proxies (tests/e2e/stack.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.models import UsageRecord
from gateway.plugin import contract
from tests.e2e.helpers import chat, issue_key, status_of, until
from tests.e2e.stack import Stack, start_worker
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INTERNAL = ("Exception", "Traceback", "litellm.", "object has no attribute", "APIConnectionError", "File \"")
HELLO = [{"role": "user", "content": "Say hello"}]


def post(url: str, key: str | None, path: str = "/v1/chat/completions", body: Any = None, *,
         content: bytes | None = None, headers: dict[str, str] | None = None, method: str = "POST") -> httpx.Response:
    sent = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {}) | (headers or {})
    if content is None and body is not None:
        content = json.dumps(body).encode()
    return httpx.request(method, url + path, content=content, headers=sent, timeout=30)


def error_of(response: httpx.Response) -> str:
    """The OpenAI-style error message; fails the test when the answer is not one."""
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code}: not JSON: {response.text[:300]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    message = body["error"].get("message")
    assert isinstance(message, str) and message, body
    for marker in INTERNAL:
        assert marker not in response.text, f"internal text {marker!r} in {response.text[:400]!r}"
    return message


def master_key(stack: Stack) -> str:
    """The proxies' master key (the test starts them, so it can read their environment)."""
    if stack.env.get("LITELLM_MASTER_KEY"):
        return stack.env["LITELLM_MASTER_KEY"]
    gw = stack.gateways[0]
    assert gw.p is not None
    environ = Path(f"/proc/{gw.p.pid}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"LITELLM_MASTER_KEY="))


def spend(stack: Stack, scope: str, ident: int, kind: int = 0) -> int:
    return int(stack.client().get(contract.budget_keys(scope, ident, "all")[kind]) or 0)


# 2. Another organization's deployments through the body ------------------------------------

@pytest.mark.parametrize("field", ["fallbacks", "context_window_fallbacks", "content_policy_fallbacks"])
def test_fallbacks_in_the_body_never_reach_another_organization(stack: Stack, live_acme: Tenant,
                                                               live_globex: Tenant, field: str) -> None:
    created = live_acme.client("admin").post(live_acme.url("routes/"), {"name": "flaky", "num_retries": 0,
                                             "deployments": [{"model": "m", "litellm_params": {
                                                 "mock_response": "litellm.InternalServerError"}}]}, format="json")
    assert created.status_code == 201, created.content
    key = issue_key(live_acme, allowed_routes=["flaky"])
    gw = stack.gateways[0].url
    until(lambda: post(gw, key["key"], body={"model": "flaky", "messages": HELLO}).status_code != 404, 3)
    other = ["globex/chat"] if field == "fallbacks" else [{"flaky": ["globex/chat"]}]
    response = post(gw, key["key"], body={"model": "flaky", "messages": HELLO, field: other})
    assert "hello from globex" not in response.text
    assert response.status_code == 400, response.text[:300]
    assert field in error_of(response)


# 3. Being served without being counted; LiteLLM's other control fields ----------------------

CONTROL_FIELDS: dict[str, Any] = {
    "no-log": True, "turn_off_message_logging": True, "user_config": {"model_list": []},
    "api_base": "http://127.0.0.1:9/", "base_url": "http://127.0.0.1:9/", "api_key": "sk-mine",
    "api_version": "2024-01-01", "model_list": [{"model_name": "chat", "litellm_params": {"model": "gpt-4o"}}],
    "mock_response": "free answer", "mock_tool_calls": [], "cache": {"no-cache": True}, "caching": False,
    "litellm_metadata": {"tags": ["x"]}, "guardrails": ["none"], "num_retries": 50, "timeout": 100000,
    "request_timeout": 100000, "litellm_logging_obj": {}, "proxy_server_request": {"body": {}},
    "secret_fields": {"raw_headers": {}}, "aws_access_key_id": "AKIA0000", "vertex_credentials": "{}",
    "extra_body": {"fallbacks": ["globex/chat"]}, "tags": ["free"], "litellm_call_id": "forged",
    "max_budget": 1000, "custom_llm_provider": "openai", "input_cost_per_token": 0, "litellm_trace_id": "x",
}


@pytest.mark.parametrize("field", sorted(CONTROL_FIELDS))
def test_litellm_control_fields_in_the_body_are_refused_by_name(stack: Stack, live_acme: Tenant, field: str) -> None:
    key = issue_key(live_acme)
    response = post(stack.gateways[0].url, key["key"],
                    body={"model": "chat", "messages": HELLO, field: CONTROL_FIELDS[field]})
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert f"'{field}'" in error_of(response)


def test_a_no_log_request_is_refused_or_counted(stack: Stack, live_acme: Tenant) -> None:
    key = issue_key(live_acme, max_budget="10")
    gw = stack.gateways[0].url
    response = post(gw, key["key"], body={"model": "chat", "messages": HELLO, "no-log": True})
    if response.status_code == 200:
        time.sleep(1)
        assert spend(stack, "key", key["id"]) > 0, "served without being counted"
    else:
        assert response.status_code == 400 and "'no-log'" in error_of(response)
    assert spend(stack, "key", key["id"], 1) == 0  # nothing held either


def test_openai_metadata_is_accepted_and_has_no_effect_on_accounting(stack: Stack, live_acme: Tenant,
                                                                     live_globex: Tenant) -> None:
    key, other = issue_key(live_acme), issue_key(live_globex)
    forged = {"user_api_key_metadata": {"portal": {"key_id": other["id"], "org": live_globex.org.pk}},
              "tags": ["free"], "spend_logs_metadata": {"x": 1}}
    response = post(stack.gateways[0].url, key["key"], body={"model": "chat", "messages": HELLO, "metadata": forged})
    assert response.status_code == 200, response.text[:300]
    until(lambda: spend(stack, "key", key["id"]) > 0, 3)
    assert spend(stack, "key", other["id"]) == 0


# The routes beside the LLM API -------------------------------------------------------------

REFUSED_ROUTES = [
    ("GET", "/v1/batches"), ("POST", "/v1/batches"), ("GET", "/v1/files"), ("POST", "/v1/files"),
    ("GET", "/v1/fine_tuning/jobs"), ("POST", "/v1/assistants"), ("POST", "/v1/threads"),
    ("POST", "/v1/vector_stores"), ("POST", "/v1/images/generations"), ("POST", "/v1/audio/speech"),
    ("POST", "/v1/moderations"), ("POST", "/v1/rerank"), ("POST", "/anthropic/v1/messages"),
    ("POST", "/vertex_ai/v1/projects/p/locations/l/publishers/google/models/m:generateContent"),
    ("POST", "/bedrock/model/m/invoke"), ("POST", "/openai/v1/chat/completions"),
    ("GET", "/langfuse/api/public/traces"), ("POST", "/key/generate"), ("GET", "/key/info"),
    ("GET", "/team/list"), ("GET", "/user/info"), ("POST", "/model/new"), ("GET", "/model_group/info"),
    ("GET", "/spend/logs"), ("GET", "/global/spend"), ("GET", "/config/yaml"), ("GET", "/health"),
    ("GET", "/routes"), ("GET", "/ui/"), ("GET", "/sso/key/generate"), ("GET", "/openapi.json"),
    ("GET", "/debug/asyncio-tasks"), ("GET", "/cache/ping"), ("POST", "/v1/responses/compact"),
    ("GET", "/v1/responses/resp_abc"), ("POST", "/mcp/"), ("GET", "/credentials"), ("POST", "/utils/token_counter"),
    ("GET", "/get/config/callbacks"), ("GET", "/memory-usage-in-mem-cache"), ("GET", "/v1/videos"),
]


@pytest.mark.parametrize(("method", "path"), REFUSED_ROUTES)
def test_routes_beside_the_llm_api_are_refused_for_portal_keys(stack: Stack, live_acme: Tenant, method: str,
                                                               path: str) -> None:
    key = issue_key(live_acme)
    body = {"model": "chat", "messages": HELLO} if method == "POST" else None
    response = post(stack.gateways[0].url, key["key"], path, body, method=method)
    assert response.status_code in (403, 404), (response.status_code, response.text[:300])
    error_of(response)


def test_cline_and_openai_routes_still_answer(stack: Stack, live_acme: Tenant) -> None:
    key = issue_key(live_acme)
    gw = stack.gateways[0].url
    assert post(gw, key["key"], "/v1/models", method="GET").json()["data"][0]["id"] == "chat"
    assert post(gw, key["key"], "/v1/model/info", method="GET").json()["data"][0]["model_name"] == "chat"
    cline = {"model": "chat", "messages": [{"role": "system", "content": "You are Cline"},
                                           {"role": "user", "content": [{"type": "text", "text": "hi",
                                                                         "cache_control": {"type": "ephemeral"}}]}],
             "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
             "litellm_session_id": "cline-01HXYZ", "max_tokens": 100, "user": "dev@acme.test",
             "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {
                 "type": "object", "properties": {"path": {"type": "string"}}}}}], "tool_choice": "auto",
             "parallel_tool_calls": False, "reasoning_effort": "low", "metadata": {"task": "x"}}
    response = post(gw, key["key"], body=cline)
    assert response.status_code == 200, response.text[:300]
    assert response.text.startswith("data: ") and "data: [DONE]" in response.text
    assert httpx.get(f"{gw}/health/liveliness", timeout=5).status_code == 200


def test_the_master_key_never_answers_an_llm_route(stack: Stack, live_acme: Tenant) -> None:
    master = master_key(stack)
    gw = stack.gateways[0].url
    for path, body in (("/v1/chat/completions", {"model": "acme/chat", "messages": HELLO}),
                       ("/v1/completions", {"model": "acme/chat", "prompt": "hi"}),
                       ("/v1/embeddings", {"model": "acme/chat", "input": "hi"})):
        response = post(gw, master, path, body)
        assert "hello from acme" not in response.text
        assert response.status_code == 403, (path, response.status_code, response.text[:300])
        assert "master key" in error_of(response)
    response = post(gw, None, body={"model": "acme/chat", "messages": HELLO}, headers={"x-api-key": master})
    assert response.status_code == 403, response.text[:300]
    assert post(gw, master, "/health/readiness", method="GET").status_code == 200
    # LiteLLM has no database in managed mode: its management routes are refused too (one took a proxy down)
    assert post(gw, master, "/key/info", method="GET").status_code == 403


# 9. Malformed requests ---------------------------------------------------------------------

MALFORMED: dict[str, tuple[bytes, str, str]] = {
    "json array": (b'[{"model": "chat"}]', "application/json", "JSON object"),
    "form body": (b"model=chat&messages=hi", "application/x-www-form-urlencoded", "application/json"),
    "text body": (b'{"model": "chat"}', "text/plain", "application/json"),
    "invalid json": (b'{"model": "chat", "messages": [', "application/json", "not valid JSON"),
    "invalid utf-8": (b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
                      "application/json", "UTF-8"),
    "deep nesting": (b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "tools": ' + b"[" * 5000
                     + b"]" * 5000 + b"}", "application/json", "nested"),
    "messages not a list": (json.dumps({"model": "chat", "messages": "hi"}).encode(), "application/json",
                            "'messages'"),
    "message without role": (json.dumps({"model": "chat", "messages": [{"content": "hi"}]}).encode(),
                             "application/json", "'messages[0].role'"),
    "message not an object": (json.dumps({"model": "chat", "messages": ["hi"]}).encode(), "application/json",
                              "'messages[0]'"),
    "model not a string": (json.dumps({"model": 5, "messages": HELLO}).encode(), "application/json", "'model'"),
    "stream not a bool": (json.dumps({"model": "chat", "messages": HELLO, "stream": "yes"}).encode(),
                          "application/json", "'stream'"),
    "negative max_tokens": (json.dumps({"model": "chat", "messages": HELLO, "max_tokens": -1}).encode(),
                            "application/json", "'max_tokens'"),
    "max_tokens a string": (json.dumps({"model": "chat", "messages": HELLO, "max_tokens": "10"}).encode(),
                            "application/json", "'max_tokens'"),
    "temperature a string": (json.dumps({"model": "chat", "messages": HELLO, "temperature": "hot"}).encode(),
                             "application/json", "'temperature'"),
    "empty body": (b"", "application/json", "JSON object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_a_400_that_says_what_is_wrong(stack: Stack, live_acme: Tenant, case: str) -> None:
    key = issue_key(live_acme, max_budget="10")
    content, content_type, expected = MALFORMED[case]
    response = post(stack.gateways[0].url, key["key"], content=content, headers={"Content-Type": content_type})
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert expected in error_of(response)
    assert spend(stack, "key", key["id"], 1) == 0  # nothing held


def test_an_oversize_body_gets_a_413(stack: Stack, live_acme: Tenant) -> None:
    key = issue_key(live_acme)
    huge = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]})
    response = post(stack.gateways[0].url, key["key"], content=huge.encode())
    assert response.status_code == 413, (response.status_code, response.text[:300])
    assert "MiB" in error_of(response)


# 8. Gateway faults -------------------------------------------------------------------------

def test_a_redis_that_refuses_writes_answers_503_with_retry_after(stack: Stack, live_acme: Tenant) -> None:
    key = issue_key(live_acme, max_budget="10")
    gw = stack.gateways[0].url
    assert status_of(lambda: chat(gw, key["key"]))[0] == 200  # documents are cached now
    r = stack.client()
    old = r.config_get("maxmemory*")
    try:
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)
        response = post(gw, key["key"], body={"model": "chat", "messages": HELLO})
    finally:
        r.config_set("maxmemory", old["maxmemory"])
        r.config_set("maxmemory-policy", old["maxmemory-policy"])
        time.sleep(1)
        if stack.worker.p is not None and stack.worker.p.poll() is not None:  # Celery gives up on an OOM broker
            stack.worker = start_worker(stack.env)
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers.get("retry-after")
    assert "retry" in error_of(response).lower()
    assert "OOM" not in response.text
    # Once Redis takes writes again, usage reaches the portal again: the consumer waited out the refusal
    # (it used to die on it, and with it the hand-over chain; only beat would have restarted it).
    assert status_of(lambda: chat(gw, key["key"]))[0] == 200
    until(lambda: UsageRecord.objects.filter(key_id=key["id"]).count() >= 2, 15, 0.2)


def test_a_failure_after_the_reservation_releases_it(stack: Stack, live_acme: Tenant) -> None:
    """A streamed answer the client abandons mid-way, and a deployment that errors: nothing stays held."""
    created = live_acme.client("admin").post(live_acme.url("routes/"), {"name": "broken", "num_retries": 0,
                                             "deployments": [{"model": "m", "litellm_params": {
                                                 "mock_response": "litellm.InternalServerError"}}]}, format="json")
    assert created.status_code == 201, created.content
    key = issue_key(live_acme, max_budget="10")
    gw = stack.gateways[0].url
    until(lambda: post(gw, key["key"], body={"model": "broken", "messages": HELLO}).status_code != 404, 3)
    with httpx.stream("POST", f"{gw}/v1/chat/completions", headers={"Authorization": f"Bearer {key['key']}"},
                      json={"model": "chat", "messages": HELLO, "stream": True}, timeout=10) as response:
        next(response.iter_bytes())  # then hang up
    until(lambda: spend(stack, "key", key["id"], 1) == 0, 5, 0.2)
    events = [json.loads(e["event"]) for _, e in stack.client().xrange(contract.USAGE_STREAM)]
    mine = [e for e in events if e["key_id"] == key["id"]]
    assert len({e["request_id"] for e in mine}) == len(mine), "a request was settled twice"


def test_an_error_in_auth_after_the_reservation_gives_it_back(stack: Stack, live_acme: Tenant) -> None:
    """A project document the plugin cannot use (here a Langfuse target without its keys) fails the
    request after its reservation was made: the gateway answers 503 and holds nothing."""
    key = issue_key(live_acme, max_budget="10")
    gw = stack.gateways[0].url
    assert post(gw, key["key"], body={"model": "chat", "messages": HELLO}).status_code == 200
    r = stack.client()
    name = contract.project_doc(live_acme.project.pk)
    doc = json.loads(r.get(name) or "{}")
    r.set(name, json.dumps({**doc, "v": 10 ** 12, "langfuse": {"host": "http://127.0.0.1:9"}}))
    r.publish(contract.EVENTS, json.dumps({"type": "project", "id": live_acme.project.pk}))
    time.sleep(0.3)
    response = post(gw, key["key"], body={"model": "chat", "messages": HELLO})
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers.get("retry-after") and "retry" in error_of(response)
    assert spend(stack, "key", key["id"], 1) == 0, "the reservation is still held"


# Red team: content parts, numbers and escapes the two parsers read differently, server-side tools --------

PARTS: dict[str, tuple[dict[str, Any], str]] = {
    "empty part": ({"model": "chat", "messages": [{"role": "user", "content": [{}]}]}, "messages[0].content[0].type"),
    "unknown part type": ({"model": "chat", "messages": [{"role": "user", "content": [{"type": "weird"}]}]},
                          "messages[0].content[0].type"),
    "text part without text": ({"model": "chat", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
                               "messages[0].content[0].text"),
    "anthropic block in chat": ({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "x"}]}]}, "messages[0].content[0].type"),
}


@pytest.mark.parametrize("case", sorted(PARTS))
def test_a_malformed_content_part_is_a_400_naming_it(stack: Stack, live_acme: Tenant, case: str) -> None:
    key = issue_key(live_acme, max_budget="10")
    body, param = PARTS[case]
    response = post(stack.gateways[0].url, key["key"], body=body)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert f"'{param}'" in error_of(response)
    assert spend(stack, "key", key["id"], 1) == 0


UNREADABLE: dict[str, tuple[bytes, str]] = {
    "lone surrogate": (b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
                       "unpaired surrogate"),
    "lone low surrogate in a key": (b'{"model": "chat", "messages": [{"role": "user", "content": "hi", '
                                    b'"\\udc00": 1}]}', "unpaired surrogate"),
    "infinite float": (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}',
                       "too large"),
    "integer beyond 64 bits": (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], '
                               b'"seed": 99999999999999999999}', "64-bit"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_what_python_and_orjson_read_differently_is_a_400_of_the_gateway(stack: Stack, live_acme: Tenant,
                                                                       case: str) -> None:
    key = issue_key(live_acme, max_budget="10")
    content, expected = UNREADABLE[case]
    response = post(stack.gateways[0].url, key["key"], content=content)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    message = error_of(response)
    assert expected in message and "Invalid JSON payload" not in message and "low surrogate" not in message
    assert spend(stack, "key", key["id"], 1) == 0


SERVER_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat mcp": ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "tools": [
        {"type": "mcp", "server_label": "proxy", "server_url": "litellm_proxy", "require_approval": "never"}]}),
    "chat mcp to the network": ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "tools": [
        {"type": "mcp", "server_label": "meta", "server_url": "http://169.254.169.254/"}]}),
    "responses mcp": ("/v1/responses", {"model": "chat", "input": "hi", "tools": [
        {"type": "mcp", "server_label": "proxy", "server_url": "litellm_proxy", "require_approval": "never"}]}),
    "responses code interpreter": ("/v1/responses", {"model": "chat", "input": "hi", "tools": [
        {"type": "code_interpreter", "container": {"type": "auto"}}]}),
    "messages mcp toolset": ("/v1/messages", {"model": "chat", "max_tokens": 10, "messages": HELLO, "tools": [
        {"type": "mcp_toolset", "mcp_server_name": "proxy"}]}),
}


@pytest.mark.parametrize("case", sorted(SERVER_TOOLS))
def test_tools_the_proxy_would_run_itself_are_refused_by_name(stack: Stack, live_acme: Tenant, case: str) -> None:
    key = issue_key(live_acme, max_budget="10")
    path, body = SERVER_TOOLS[case]
    response = post(stack.gateways[0].url, key["key"], path, body)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert "'tools[0].type'" in error_of(response)
    assert spend(stack, "key", key["id"], 1) == 0


def test_a_stream_the_client_abandons_after_its_answer_began_is_charged(stack: Stack, live_acme: Tenant) -> None:
    """Served is counted, once: whether LiteLLM's callback or the settlement watch settles it, a request
    whose answer began (200) is charged, never released at zero cost. A regression net (it passed before:
    LiteLLM reports a mock stream the client left); the watch's own path is tested in test_plugin_state."""
    key = issue_key(live_acme, max_budget="10")
    gw = stack.gateways[0].url
    with httpx.stream("POST", f"{gw}/v1/chat/completions", headers={"Authorization": f"Bearer {key['key']}"},
                      json={"model": "chat", "messages": HELLO, "stream": True}, timeout=10) as response:
        assert response.status_code == 200
        next(response.iter_bytes())  # then hang up
    until(lambda: spend(stack, "key", key["id"]) > 0, 40, 0.5)
    assert spend(stack, "key", key["id"], 1) == 0
    # one usage record, a success (the consumer moves events from the stream into the database)
    until(lambda: UsageRecord.objects.filter(key_id=key["id"]).exists(), 15, 0.2)
    time.sleep(0.5)  # a second settlement, if there were one, would have arrived by now
    assert list(UsageRecord.objects.filter(key_id=key["id"]).values_list("status", flat=True)) == ["success"]
