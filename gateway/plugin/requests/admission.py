"""What each route admits: its public fields, the fields clients send harmlessly (dropped), the trace
metadata kept, and LiteLLM's own control fields (refused by name)."""

from __future__ import annotations

from typing import Any

from gateway.plugin.requests.checks import (
    Check,
    any_of,
    boolean,
    integer,
    logit_bias,
    nullable,
    number,
    obj,
    one_of,
    stop,
    string,
    strings,
    tool_choice,
)
from gateway.plugin.requests.errors import invalid
from gateway.plugin.requests.messages import anthropic_messages, chat_messages, embedding_input, prompt
from gateway.plugin.requests.parts import ANTHROPIC_SYSTEM_PARTS, parts, responses_input
from gateway.plugin.requests.tools import anthropic_tools, chat_functions, chat_tools, responses_tools

# The public fields of each route ---------------------------------------------------------------

SAMPLING: dict[str, Check] = {
    "temperature": nullable(number(0, 2)), "top_p": nullable(number(0, 1)), "n": nullable(integer(1, 128)),
    "stop": stop, "presence_penalty": nullable(number(-2, 2)), "frequency_penalty": nullable(number(-2, 2)),
    "logit_bias": nullable(logit_bias), "seed": nullable(integer(-(2 ** 63), 2 ** 63 - 1)),
    "user": string(256), "stream": nullable(boolean), "stream_options": nullable(obj),
    "logprobs": nullable(any_of(boolean, integer(0, 20), expected="true, false or an integer")),
}
# Provider parameters a client may pass through an SDK's `extra_body`; the provider checks them.
PROVIDER_EXTRAS: dict[str, Check] = {
    "top_k": nullable(integer(0)), "min_p": nullable(number(0, 1)), "repetition_penalty": nullable(number(0, 10)),
    "thinking": nullable(obj), "reasoning": nullable(obj), "chat_template_kwargs": nullable(obj),
    "include_reasoning": nullable(boolean),
}
CHAT: dict[str, Check] = {
    "model": string(256, empty=False), "messages": chat_messages, **SAMPLING, **PROVIDER_EXTRAS,
    "max_tokens": nullable(integer(0)), "max_completion_tokens": nullable(integer(0)),
    "tools": nullable(chat_tools), "tool_choice": nullable(tool_choice), "parallel_tool_calls": nullable(boolean),
    "functions": nullable(chat_functions), "function_call": nullable(tool_choice), "top_logprobs": nullable(integer(0, 20)),
    "response_format": nullable(obj), "reasoning_effort": nullable(string(32)), "prediction": nullable(obj),
    "modalities": nullable(strings), "audio": nullable(obj), "store": nullable(boolean),
    "service_tier": nullable(string(32)), "web_search_options": nullable(obj), "verbosity": nullable(string(32)),
    "safety_identifier": string(256), "prompt_cache_key": string(256), "prompt_cache_retention": string(32),
}
COMPLETIONS: dict[str, Check] = {
    "model": string(256, empty=False), "prompt": prompt, **SAMPLING, **PROVIDER_EXTRAS,
    "max_tokens": nullable(integer(0)), "suffix": nullable(string()), "echo": nullable(boolean),
    "best_of": nullable(integer(1, 20)),
}
EMBEDDINGS: dict[str, Check] = {
    "model": string(256, empty=False), "input": embedding_input, "encoding_format": one_of("float", "base64"),
    "dimensions": nullable(integer(1)), "user": string(256),
}
RESPONSES: dict[str, Check] = {
    "model": string(256, empty=False), "input": responses_input,
    "instructions": nullable(string()), "max_output_tokens": nullable(integer(0)),
    "temperature": nullable(number(0, 2)), "top_p": nullable(number(0, 1)), "tools": nullable(responses_tools),
    "tool_choice": nullable(tool_choice), "parallel_tool_calls": nullable(boolean), "stream": nullable(boolean),
    "stream_options": nullable(obj), "reasoning": nullable(obj), "text": nullable(obj),
    "truncation": nullable(one_of("auto", "disabled")), "user": string(256), "store": nullable(boolean),
    "service_tier": nullable(string(32)), "include": nullable(strings), "top_logprobs": nullable(integer(0, 20)),
    "max_tool_calls": nullable(integer(0)), "safety_identifier": string(256), "prompt_cache_key": string(256),
    "prompt_cache_retention": string(32),
}
MESSAGES: dict[str, Check] = {
    "model": string(256, empty=False), "messages": anthropic_messages, "max_tokens": integer(0),
    "system": parts(ANTHROPIC_SYSTEM_PARTS, "a string or an array of text blocks"),
    "stop_sequences": nullable(strings), "stream": nullable(boolean), "temperature": nullable(number(0, 1)),
    "top_p": nullable(number(0, 1)), "top_k": nullable(integer(0)), "tools": nullable(anthropic_tools),
    "tool_choice": nullable(obj), "thinking": nullable(obj), "service_tier": nullable(string(32)),
}
API_FIELDS = {"chat": CHAT, "completions": COMPLETIONS, "embeddings": EMBEDDINGS, "responses": RESPONSES,
              "messages": MESSAGES}
API_NAMES = {"chat": "chat completions", "completions": "completions", "embeddings": "embeddings",
             "responses": "responses", "messages": "messages (Anthropic)"}
REQUIRED = {"chat": ("model", "messages"), "completions": ("model", "prompt"), "embeddings": ("model", "input"),
            "responses": ("model", "input"), "messages": ("model", "messages", "max_tokens")}
ROUTES = {"/chat/completions": "chat", "/v1/chat/completions": "chat", "/completions": "completions",
          "/v1/completions": "completions", "/embeddings": "embeddings", "/v1/embeddings": "embeddings",
          "/responses": "responses", "/v1/responses": "responses", "/messages": "messages",
          "/v1/messages": "messages"}

# Sent by well-behaved clients, meaningful only to LiteLLM: dropped, never forwarded.
# Cline's LiteLLM provider sends `litellm_session_id`.
DROPPED = frozenset({"litellm_session_id"})

# OpenAI's `metadata` (a string map for stored completions) and Anthropic's (`user_id`) are, in LiteLLM,
# its logging, budget and routing channel. What it keeps is what names and tags the trace in the
# project's own Langfuse (LiteLLM's langfuse_otel reads these; the portal's own judge and benchmark calls
# name and tag theirs so that evaluations skip them); every other key is dropped.
TRACE_METADATA_TEXT = ("trace_name", "generation_name")
MAX_TRACE_TAGS, MAX_TRACE_TEXT = 20, 200


def trace_metadata(value: Any) -> dict[str, Any]:
    """The part of a request's `metadata` that is the caller's to say (see above)."""
    if not isinstance(value, dict):
        return {}
    kept: dict[str, Any] = {k: value[k] for k in TRACE_METADATA_TEXT
                            if isinstance(value.get(k), str) and len(value[k]) <= MAX_TRACE_TEXT}
    tags = value.get("tags")
    if isinstance(tags, list) and len(tags) <= MAX_TRACE_TAGS and \
            all(isinstance(t, str) and len(t) <= MAX_TRACE_TEXT for t in tags):
        kept["tags"] = tags
    return kept

# LiteLLM's own request fields, named in their refusal so that a client sees why.
CONTROL_PREFIXES = ("litellm_", "aws_", "vertex_", "azure_", "watsonx_", "langfuse_", "langsmith_", "mock_",
                    "input_cost_", "output_cost_", "cache_")
CONTROL = frozenset({
    "fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "context_window_fallback_dict",
    "max_fallbacks", "disable_fallbacks", "user_config", "model_list", "api_base", "base_url", "api_key",
    "api_version", "organization", "custom_llm_provider", "no-log", "no_log", "turn_off_message_logging",
    "cache", "caching", "caching_groups", "ttl", "guardrails", "num_retries", "max_retries", "retry_policy",
    "retry_strategy", "timeout", "request_timeout", "stream_timeout", "force_timeout", "keepalive_seconds",
    "proxy_server_request", "secret_fields", "headers", "extra_headers", "extra_body", "extra_query",
    "tags", "max_budget", "budget_duration", "model_info", "model_alias_map", "base_model", "tpm", "rpm",
    "order", "weight", "region_name", "tenant_id", "client_id", "client_secret", "ssl_verify", "client",
    "acompletion", "aembedding", "logger_fn", "verbose", "complete_response", "id", "deployment_id",
    "azure_ad_token", "aws_region_name", "hf_model_name", "custom_prompt_dict", "roles", "bos_token",
    "eos_token", "initial_prompt_value", "final_prompt_value", "preset_cache_key", "prompt_id",
    "prompt_variables", "prompt_version", "prompt_label", "enable_prompt_caching", "allowed_openai_params",
    "additional_drop_params", "drop_params", "user_continue_message", "assistant_continue_message",
    "ensure_alternating_roles", "supports_system_message", "use_in_pass_through", "use_litellm_proxy",
    "silent_model", "enable_json_schema_validation", "merge_reasoning_content_in_choices",
    "configurable_clientside_auth_params", "mcp_servers", "previous_response_id", "conversation", "background",
    "prompt", "container", "context_management", "vector_store_ids", "file_ids", "attachments", "session_id",
})


def is_control(name: str) -> bool:
    return name in CONTROL or name.startswith(CONTROL_PREFIXES) or name.startswith("_")


def admit(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body LiteLLM may use for this route: public fields only, each of the right type."""
    fields = API_FIELDS[kind]
    for name in REQUIRED[kind]:
        if name not in body:
            raise invalid(f"'{name}' is required for {API_NAMES[kind]}.", name, "missing_field")
    clean: dict[str, Any] = {}
    for name, value in body.items():
        check = fields.get(name)
        if check is not None:
            check(value, name)
            clean[name] = value
        elif name in DROPPED:
            continue
        elif name == "metadata":
            if kept := trace_metadata(value):
                clean[name] = kept
        elif is_control(name):
            raise invalid(f"The field '{name[:80]}' is not accepted by this gateway: it controls the proxy "
                          "(routing, fallbacks, retries, credentials, caching or logging), which the portal sets "
                          "for each route. Remove it from the request.", name[:80], "unsupported_field")
        else:
            raise invalid(f"The field '{name[:80]}' is not part of the {API_NAMES[kind]} API this gateway serves. "
                          "Remove it from the request.", name[:80], "unsupported_field")
    return clean
