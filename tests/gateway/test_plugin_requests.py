"""The gateway's body policy (gateway/plugin/requests/) and its front door (guard.py), without a proxy."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.plugin import guard, requests
from gateway.plugin.requests import Refusal, admit, parse

HELLO = [{"role": "user", "content": "hi"}]


def refusal(call: Any) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call()
    return caught.value


def chat(**fields: Any) -> dict[str, Any]:
    return admit("chat", {"model": "chat", "messages": HELLO, **fields})


def test_what_the_openai_sdk_and_cline_send_is_admitted_unchanged() -> None:
    body = {"model": "chat", "messages": [
        {"role": "system", "content": "You are Cline"},
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "read_file", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "file"}],
        "stream": True, "stream_options": {"include_usage": True}, "temperature": 0, "max_tokens": 8192,
        "max_completion_tokens": 100, "tools": [{"type": "function", "function": {"name": "read_file"}}],
        "tool_choice": "auto", "parallel_tool_calls": False, "reasoning_effort": "high", "user": "dev",
        "n": 1, "stop": ["\n\n"], "response_format": {"type": "json_object"}, "seed": 7, "logprobs": True,
        "top_logprobs": 2, "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"50256": -100},
        "prediction": {"type": "content", "content": "x"}, "modalities": ["text"], "store": False,
        "service_tier": "auto", "top_p": 0.9, "top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert admit("chat", body) == body


def test_fields_clients_send_harmlessly_are_dropped() -> None:
    assert "litellm_session_id" not in chat(litellm_session_id="cline-1")
    assert "metadata" not in chat(metadata={"user_id": "u", "spend_logs_metadata": {"x": 1}})


def test_metadata_keeps_only_what_names_and_tags_the_projects_own_trace() -> None:
    """The portal's judge and benchmark calls name and tag their traces (evaluations skip them);
    every other metadata key is LiteLLM's logging, budget and routing channel."""
    sent = {"trace_name": "portal-judge", "generation_name": "g", "tags": ["portal"], "trace_id": "t1",
            "user_api_key_metadata": {"portal": {}}, "model_group": "globex/chat", "logging": [{"x": 1}]}
    assert chat(metadata=sent)["metadata"] == {"trace_name": "portal-judge", "generation_name": "g",
                                                 "tags": ["portal"]}
    assert "metadata" not in chat(metadata={"tags": [{"not": "text"}], "trace_name": 7})
    assert "metadata" not in chat(metadata="not an object")


@pytest.mark.parametrize("field", [
    "fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "user_config", "api_base", "base_url",
    "api_key", "api_version", "model_list", "mock_response", "mock_tool_calls", "mock_timeout", "no-log",
    "turn_off_message_logging", "cache", "caching", "litellm_metadata", "guardrails", "num_retries", "timeout",
    "stream_timeout", "litellm_logging_obj", "proxy_server_request", "secret_fields", "aws_access_key_id",
    "aws_secret_access_key", "vertex_credentials", "vertex_project", "azure_ad_token", "extra_body", "tags",
    "litellm_call_id", "litellm_trace_id", "litellm_credential_name", "input_cost_per_token", "custom_llm_provider",
    "max_budget", "headers", "previous_response_id", "mcp_servers", "_private", "disable_fallbacks", "prompt_id",
    "langfuse_secret_key", "cache_key", "organization",
])
def test_litellm_control_fields_are_refused_by_name(field: str) -> None:
    error = refusal(lambda: chat(**{field: "x"}))
    assert error.status == 400 and error.param == field and f"'{field}'" in error.message
    assert "controls the proxy" in error.message


def test_an_unknown_field_is_refused_by_name() -> None:
    error = refusal(lambda: chat(frobnicate=1))
    assert error.status == 400 and "'frobnicate' is not part of the chat completions API" in error.message


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"messages": "hi"}, "messages", "must be an array of messages"),
    ({"messages": []}, "messages", "at least one message"),
    ({"messages": ["hi"]}, "messages[0]", "must be a message object"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "is missing"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string or an array"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0]", "an object"),
    ({"model": 5}, "model", "must be a string, not number"),
    ({"model": ""}, "model", "must not be empty"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"max_tokens": -1}, "max_tokens", "at least 0"),
    ({"max_tokens": "10"}, "max_tokens", "an integer"),
    ({"max_tokens": True}, "max_tokens", "an integer"),
    ({"max_tokens": 1.5}, "max_tokens", "an integer"),
    ({"temperature": "hot"}, "temperature", "a number"),
    ({"temperature": 9}, "temperature", "between 0 and 2"),
    ({"n": 0}, "n", "between 1 and 128"),
    ({"stop": [1]}, "stop", "a string or an array of strings"),
    ({"tools": {"a": 1}}, "tools", "an array"),
    ({"user": 5}, "user", "a string"),
])
def test_wrong_field_types_say_what_is_wrong(fields: dict[str, Any], param: str, says: str) -> None:
    error = refusal(lambda: chat(**fields))
    assert error.status == 400 and error.param == param and says in error.message, error.message
    assert f"'{param}'" in error.message


def test_required_fields_per_route() -> None:
    assert refusal(lambda: admit("chat", {"model": "chat"})).param == "messages"
    assert refusal(lambda: admit("embeddings", {"model": "e"})).param == "input"
    assert refusal(lambda: admit("messages", {"model": "m", "messages": HELLO})).param == "max_tokens"
    assert admit("embeddings", {"model": "e", "input": ["a", "b"], "dimensions": 8}) == {
        "model": "e", "input": ["a", "b"], "dimensions": 8}
    assert admit("completions", {"model": "c", "prompt": "hi", "echo": False})["prompt"] == "hi"
    assert admit("responses", {"model": "r", "input": "hi", "metadata": {"a": "b"}}) == {"model": "r", "input": "hi"}
    anthropic = {"model": "m", "max_tokens": 10, "messages": HELLO, "system": "be brief", "metadata": {"user_id": "u"}}
    assert admit("messages", anthropic) == {"model": "m", "max_tokens": 10, "messages": HELLO, "system": "be brief"}
    assert refusal(lambda: admit("messages", {**anthropic, "messages": [{"role": "system", "content": "x"}]}))


@pytest.mark.parametrize(("raw", "content_type", "says"), [
    (b"[1, 2]", "application/json", "must be a JSON object, not a JSON array"),
    (b'"hi"', "application/json", "not a JSON string"),
    (b"model=chat", "application/x-www-form-urlencoded", "Content-Type: application/json"),
    (b"{}", "multipart/form-data; boundary=x", "Content-Type: application/json"),
    (b'{"model": ', "application/json", "not valid JSON at line 1"),
    (b'{"a": NaN}', "application/json", "not valid JSON"),
    (b'{"a": "\xff"}', "application/json", "not valid UTF-8"),
    (b"", "application/json", "empty"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deeply"),
    (b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}", "application/json", "nested too deeply"),
])
def test_malformed_bodies(raw: bytes, content_type: str, says: str) -> None:
    error = refusal(lambda: parse(raw, content_type))
    assert error.status == 400 and says in error.message, error.message


def test_json_with_or_without_a_charset_parses() -> None:
    assert parse(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert parse(b'{"a": 1}', "") == {"a": 1}
    assert parse(b'{"a": [[[1]]]}', "application/json")["a"] == [[[1]]]


def test_an_oversize_body_is_a_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests.errors, "MAX_BODY_BYTES", 1024)
    error = refusal(lambda: parse(b'{"a": "' + b"x" * 2000 + b'"}', "application/json"))
    assert error.status == 413 and "at most 0.0009765" in error.message


def test_a_lone_surrogate_is_refused_when_re_encoded() -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "\ud800"}]}  # parse refuses it first
    assert "unpaired surrogate" in refusal(lambda: requests.encode(admit("chat", body))).message


def test_duplicate_keys_are_resolved_once_for_everyone() -> None:
    body = parse(b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "model": "other"}', "")
    assert json.loads(requests.encode(admit("chat", body)))["model"] == "other"


# The guard, with a stand-in for LiteLLM behind it -------------------------------------------

class Downstream:
    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.seen.append((dict(scope), message.get("body", b"")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def call(app: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         query: bytes = b"") -> tuple[int, dict[str, Any] | None]:
    sent: list[dict[str, Any]] = []
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw_headers, "query_string": query}
    asyncio.run(app(scope, receive, send))
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(payload) if payload else None


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> tuple[guard.Guard, Downstream]:
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-master")
    inner = Downstream()
    return guard.Guard(inner), inner


def test_the_guard_hands_litellm_the_checked_body_and_no_steering_headers(app: Any) -> None:
    outer, inner = app
    body = json.dumps({"model": "chat", "messages": HELLO, "metadata": {"user_id": "x"}}).encode()
    status, _ = call(outer, "POST", "/v1/chat/completions/", body, {
        "Authorization": "Bearer sk-tenant", "Content-Type": "application/json", "x-litellm-tags": "free",
        "x-litellm-timeout": "9999", "X-LiteLLM-Num-Retries": "50", "x-litellm-api-key": "sk-tenant"},
        query=b"api-version=2024-01-01")
    assert status == 200
    scope, seen = inner.seen[0]
    assert json.loads(seen) == {"model": "chat", "messages": HELLO}
    names = {n for n, _ in scope["headers"]}
    assert b"x-litellm-tags" not in names and b"x-litellm-timeout" not in names and b"x-litellm-num-retries" not in names
    assert b"x-litellm-api-key" in names and (b"content-length", str(len(seen)).encode()) in scope["headers"]
    assert scope["query_string"] == b"" and scope["path"] == "/v1/chat/completions"


MANAGEMENT = [("GET", "/key/info"), ("GET", "/ui/"), ("POST", "/model/new"), ("GET", "/spend/logs")]
HEALTH = [("GET", "/health"), ("GET", "/"), ("GET", "/health/readiness"), ("GET", "/model_group/info")]
LLM_ALIASES = [("POST", "/v1/files"), ("POST", "/openai/deployments/x/chat/completions"),
               ("POST", "/anthropic/v1/messages"), ("POST", "/engines/x/chat/completions"),
               ("POST", "/v1/images/generations"), ("POST", "/v1/rerank"), ("POST", "/v1/audio/speech")]


@pytest.mark.parametrize(("method", "path"), MANAGEMENT + HEALTH[:2] + LLM_ALIASES)
def test_portal_keys_reach_only_the_llm_and_model_routes(app: Any, method: str, path: str) -> None:
    outer, inner = app
    status, body = call(outer, method, path, b"{}", {"Authorization": "Bearer sk-tenant"})
    assert status == 404 and body is not None and "/v1/model/info" in body["error"]["message"]
    assert inner.seen == []


@pytest.mark.parametrize(("method", "path"), HEALTH)
def test_the_master_key_keeps_litellms_health_and_model_list_routes(app: Any, method: str, path: str) -> None:
    outer, _ = app
    assert call(outer, method, path, b"{}", {"Authorization": "Bearer sk-master"})[0] == 200


@pytest.mark.parametrize(("method", "path"), LLM_ALIASES + MANAGEMENT)
def test_the_master_key_reaches_no_other_alias_of_an_llm_route(app: Any, method: str, path: str) -> None:
    """LiteLLM serves models under many paths besides the five LLM routes (Azure-style deployments,
    engines, images, audio, rerank, pass-through): with the master key each answered any
    organization's model group."""
    outer, inner = app
    for header in ("Authorization", "x-api-key", "Ocp-Apim-Subscription-Key"):
        value = "Bearer sk-master" if header == "Authorization" else "sk-master"
        status, body = call(outer, method, path, b"{}", {header: value})
        assert status == 403 and body is not None and "master key" in body["error"]["message"], (header, body)
    assert inner.seen == []


def test_the_master_key_never_reaches_an_llm_route(app: Any) -> None:
    outer, inner = app
    body = json.dumps({"model": "acme/chat", "messages": HELLO}).encode()
    for headers in ({"Authorization": "Bearer sk-master"}, {"x-api-key": "sk-master"},
                    {"Authorization": "Bearer sk-other", "x-litellm-api-key": "sk-master"}):
        status, answer = call(outer, "POST", "/chat/completions", body, headers)
        assert status == 403 and answer is not None and "master key" in answer["error"]["message"]
    assert inner.seen == []
    assert call(outer, "GET", "/v1/models", headers={"Authorization": "Bearer sk-tenant"})[0] == 200
    assert call(outer, "GET", "/health/liveliness")[0] == 200


def test_the_guard_refuses_bodies_before_litellm(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    outer, inner = app
    key = {"Authorization": "Bearer sk-tenant"}  # the state is not loaded: custom auth decides about the key
    assert call(outer, "POST", "/v1/chat/completions", b"[1]", key)[0] == 400
    assert call(outer, "GET", "/v1/chat/completions")[0] == 405
    monkeypatch.setattr(requests.errors, "MAX_BODY_BYTES", 5000)
    status, answer = call(outer, "POST", "/v1/chat/completions", b"{" + b" " * 6000 + b"}", key)
    assert status == 413 and answer is not None and answer["error"]["code"] == "request_too_large"
    status, _ = call(outer, "POST", "/v1/chat/completions", b"{}", {"content-length": "999999", **key})
    assert status == 413
    assert inner.seen == []


def test_a_request_without_a_key_the_portal_issued_is_refused_before_its_body_is_read(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The body (up to 16 MiB) is parsed on the event loop: a client with no key, or a key the
    portal never issued, must not make the proxy parse it (three 15 MiB bodies without a key
    took 17 s and held /health/liveliness for 5 s)."""
    import redis
    from django.conf import settings

    from gateway.plugin import contract, state

    outer, inner = app
    parsed: list[bytes] = []
    monkeypatch.setattr(requests, "parse", lambda raw, kind: parsed.append(raw) or {})
    status, answer = call(outer, "POST", "/v1/chat/completions", b'{"model":')
    assert status == 401 and answer is not None and "No API key" in answer["error"]["message"]
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set(contract.EPOCH, "1")  # the state is loaded, and holds no such key
    monkeypatch.setattr(state, "_state", None)  # a state of this test's event loop
    status, answer = call(outer, "POST", "/v1/chat/completions", b'{"model":', {"Authorization": "Bearer sk-random"})
    assert status == 401 and answer is not None and "Invalid API key" in answer["error"]["message"]
    assert parsed == [] and inner.seen == []


# LiteLLM's own words never reach the client --------------------------------------------------

@pytest.mark.parametrize(("message", "status", "expected"), [
    ("litellm.InternalServerError: this is a mock internal server error\n\nLiteLLM: model group 'acme/flaky' "
     "failed with the error above and no fallback model group was found for it", 500,
     "this is a mock internal server error"),
    ("Invalid request format: litellm.APIConnectionError: APIConnectionError: OpenAIException - 'str' object has "
     "no attribute 'get'", 400, "The model's provider refused the request as it was sent."),
    ("litellm.BadRequestError: OpenAIException - This model's maximum context length is 8192 tokens.", 400,
     "This model's maximum context length is 8192 tokens."),
    ("litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided", 401,
     "Incorrect API key provided"),
    ("Traceback (most recent call last):\n  File \"x.py\"", 500, "The model's provider failed to answer"),
    ("This key may not use the model 'premium'. Models it may use: chat.", 403,
     "This key may not use the model 'premium'. Models it may use: chat."),
])
def test_error_messages_keep_the_providers_words_only(message: str, status: int, expected: str) -> None:
    assert guard.public_message(message, status).startswith(expected)


def test_an_error_answer_of_litellm_is_rewritten_and_its_headers_dropped() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        scope[guard.RESERVATION] = {"route": "flaky", "group": "acme/flaky"}
        body = json.dumps({"error": {"message": "litellm.InternalServerError: boom in model group acme/flaky",
                                     "type": "litellm.InternalServerError", "param": None, "code": "500"}}).encode()
        await send({"type": "http.response.start", "status": 500, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"x-litellm-model-api-base", b"http://10.0.0.5"), (b"x-litellm-model-group", b"acme/flaky")]})
        await send({"type": "http.response.body", "body": body})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps({"model": "flaky", "messages": HELLO}).encode()}

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", b"Bearer sk-tenant")], "query_string": b""}
    asyncio.run(guard.Guard(failing)(scope, receive, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 500 and b"x-litellm-model-api-base" not in headers
    error = json.loads(sent[1]["body"])["error"]
    assert error == {"message": "The model's provider failed to answer; retry in a moment, or tell an admin of your "
                                "organization if it goes on.", "type": "api_error", "param": None, "code": "500"}
    assert int(headers[b"content-length"]) == len(sent[1]["body"])


# Content parts, numbers the two parsers read differently, tools (issue 8, red team) ------------

@pytest.mark.parametrize(("kind", "body", "param"), [
    ("chat", {"messages": [{"role": "user", "content": [{}]}]}, "messages[0].content[0].type"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "weird"}]}]}, "messages[0].content[0].type"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": 5, "text": "x"}]}]}, "messages[0].content[0].type"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]},
     "messages[0].content[0].image_url"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}]},
     "messages[0].content[0].image_url.url"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": "x"}]}]},
     "messages[0].content[0].input_audio"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]},
     "messages[0].content[0].type"),
    ("chat", {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].type"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": "on"}]}]},
     "messages[0].content[0].cache_control"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "tool_use"}]}]},
     "messages[1].content[0].type"),
    ("messages", {"messages": [{"role": "user", "content": [{}]}]}, "messages[0].content[0].type"),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
     "messages[0].content[0].type"),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "messages[0].content[0].source"),
    ("messages", {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]},
     "messages[0].content[0].input"),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                            "content": [{"type": "weird"}]}]}]},
     "messages[0].content[0].content[0].type"),
    ("messages", {"messages": HELLO, "system": [{"type": "image", "source": {}}]}, "system[0].type"),
    ("responses", {"input": [{"role": "user", "content": [{}]}]}, "input[0].content[0].type"),
    ("responses", {"input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
     "input[0].content[0].type"),
    ("responses", {"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    ("responses", {"input": [{"type": "weird"}]}, "input[0].type"),
    ("responses", {"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
])
def test_a_malformed_content_part_is_a_400_naming_it(kind: str, body: dict[str, Any], param: str) -> None:
    base = {"chat": {"model": "chat"}, "messages": {"model": "m", "max_tokens": 10},
            "responses": {"model": "r"}}[kind]
    error = refusal(lambda: admit(kind, {**base, **body}))
    assert error.status == 400 and error.param == param and f"'{param}'" in error.message, error.message


def test_the_content_parts_clients_send_are_admitted() -> None:
    chat_body = {"model": "chat", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are Cline", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
            {"type": "image_url", "image_url": "data:image/png;base64,AA"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "refusal", "refusal": "no"}]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "file"}]}]}
    assert admit("chat", chat_body) == chat_body
    anthropic = {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "be brief",
                                                            "cache_control": {"type": "ephemeral"}}],
                 "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "AA"}},
                                     {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                     "data": "doc"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                          {"type": "redacted_thinking", "data": "x"},
                                          {"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "text"},
                                     {"type": "tool_result", "tool_use_id": "t1",
                                      "content": [{"type": "text", "text": "x"}], "is_error": False}]}]}
    assert admit("messages", anthropic) == anthropic
    responses = {"model": "r", "input": [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"},
                                                        {"type": "input_image", "image_url": "data:x"},
                                                        {"type": "input_file", "file_data": "AA", "filename": "f"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "id": "rs_1", "summary": []}]}
    assert admit("responses", responses) == responses


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}', "unpaired surrogate"),
    (b'{"model": "chat", "messages": [{"role": "user", "content": "a\\uDC00b"}]}', "unpaired surrogate"),
    (b'{"model": "chat", "\\ud83d": 1}', "unpaired surrogate"),
    (b'{"model": "chat", "temperature": 1e400}', "too large"),
    (b'{"model": "chat", "temperature": -1e400}', "too large"),
    (b'{"model": "chat", "seed": 9223372036854775808}', "integer"),
    (b'{"model": "chat", "seed": -9223372036854775809}', "integer"),
    (b'{"model": "chat", "seed": ' + b"9" * 5000 + b"}", "integer"),
])
def test_what_the_two_parsers_would_read_differently_is_refused(raw: bytes, says: str) -> None:
    error = refusal(lambda: parse(raw, "application/json"))
    assert error.status == 400 and says in error.message, error.message


def test_numbers_and_escapes_both_parsers_agree_on_are_kept() -> None:
    body = parse(b'{"a": "\\ud83d\\ude00 \\\\ud800", "b": 1e300, "c": -9223372036854775808, '
                 b'"d": 9223372036854775807, "e": 1.5e-400}', "application/json")
    assert body == {"a": "\U0001f600 \\ud800", "b": 1e300, "c": -(2 ** 63), "d": 2 ** 63 - 1, "e": 0.0}


@pytest.mark.parametrize(("kind", "body", "param"), [
    ("chat", {"tools": [{"type": "mcp", "server_label": "x", "server_url": "litellm_proxy"}]}, "tools[0].type"),
    ("chat", {"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ("chat", {"tools": [{"function": {"name": "f"}}]}, "tools[0].type"),
    ("chat", {"tools": [{"type": "function"}]}, "tools[0].function"),
    ("chat", {"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function.name"),
    ("chat", {"functions": [{"parameters": {}}]}, "functions[0].name"),
    ("responses", {"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://10.0.0.1"}]}, "tools[0].type"),
    ("responses", {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
    ("responses", {"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
    ("responses", {"tools": [{"type": "local_shell"}]}, "tools[0].type"),
    ("responses", {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ("responses", {"tools": [{"type": "function"}]}, "tools[0].name"),
    ("messages", {"tools": [{"type": "mcp", "name": "x"}]}, "tools[0].type"),
    ("messages", {"tools": [{"type": "mcp_toolset", "mcp_server_name": "x"}]}, "tools[0].type"),
    ("messages", {"tools": [{"input_schema": {}}]}, "tools[0].name"),
    ("messages", {"tools": [{"name": "f", "input_schema": {}}], "mcp_servers": [{"url": "http://x"}]}, "mcp_servers"),
])
def test_tools_that_need_the_proxys_state_or_servers_are_refused_by_name(kind: str, body: dict[str, Any],
                                                                          param: str) -> None:
    base = {"chat": {"model": "chat", "messages": HELLO}, "messages": {"model": "m", "max_tokens": 10,
                                                                       "messages": HELLO},
            "responses": {"model": "r", "input": "hi"}}[kind]
    error = refusal(lambda: admit(kind, {**base, **body}))
    assert error.status == 400 and error.param == param and f"'{param}'" in error.message, error.message


def test_the_tools_clients_send_are_admitted() -> None:
    function = {"type": "function", "function": {"name": "read_file", "description": "d", "strict": True,
                                                 "parameters": {"type": "object"}}}
    assert chat(tools=[function])["tools"] == [function]
    responses = [{"type": "function", "name": "f", "parameters": {}}, {"type": "web_search"},
                 {"type": "web_search_preview"}, {"type": "custom", "name": "grammar"}]
    assert admit("responses", {"model": "r", "input": "hi", "tools": responses})["tools"] == responses
    anthropic = [{"name": "read", "description": "d", "input_schema": {"type": "object"}},
                 {"type": "custom", "name": "c", "input_schema": {}},
                 {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                 {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]
    assert admit("messages", {"model": "m", "max_tokens": 5, "messages": HELLO, "tools": anthropic})["tools"] == anthropic


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/", "http://127.0.0.1:6379/", "http://2130706433/",
    "http://0x7f.1/", "http://[::ffff:10.0.0.5]/", "http://10.1.2.3/x.png", "http://localhost:8000/admin/",
    "http://metadata.google.internal/computeMetadata/v1/", "file:///etc/passwd", "gopher://example.com/",
    "http://user:pw@example.com/x.png"])
def test_urls_litellm_would_fetch_from_the_gateways_network_are_refused(url: str) -> None:
    """For providers without image URLs (Anthropic, Bedrock, Vertex AI...) LiteLLM downloads the URL from
    the gateway's host: a tenant could make it call the metadata service or Redis."""
    part = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    assert refusal(lambda: chat(messages=[part])).code == "url_not_allowed"
    assert refusal(lambda: chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": url}]}])).code == "url_not_allowed"
    assert refusal(lambda: admit("responses", {"model": "r", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": url}]}]})).code == "url_not_allowed"
    assert refusal(lambda: admit("messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": url}}]}]})).code == "url_not_allowed"


def test_inline_and_public_image_urls_are_admitted() -> None:
    for url in ("data:image/png;base64,iVBORw0KGgo=", "https://upload.example.com/cat.png", "https://8.8.8.8/x.png"):
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
