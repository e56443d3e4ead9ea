"""What the gateway admits from a request body, decided before LiteLLM sees it.

LiteLLM reads dozens of its own control fields from a request body (fallbacks
to other model groups, `user_config` with a model list of the caller's,
`api_base`/`api_key`, `mock_response`, `no-log`, caching and retry switches,
metadata that steers logging, tags and budgets...). Each route therefore
admits only the fields of its public OpenAI or Anthropic API, checked for
their types: a known LiteLLM control field gets a 400 that names it, any
other unknown field a 400 too, and the few fields clients send harmlessly
(`metadata`, Cline's `litellm_session_id`) are dropped. The body LiteLLM gets
is the one checked here: the client's bytes when nothing was dropped (both
parsers agree on a body this module accepts: strict UTF-8, no NaN, the last
of duplicate keys), else the checked body re-encoded.

Standard library only."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

from gateway.plugin import urls

MAX_BODY_BYTES = int(os.environ.get("PORTAL_GATEWAY_MAX_BODY_BYTES", str(16 * 1024 * 1024)))
MAX_DEPTH = int(os.environ.get("PORTAL_GATEWAY_MAX_JSON_DEPTH", "64"))


class Refusal(Exception):
    """A request the gateway answers itself, with an OpenAI-style error."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str = "invalid_request_body") -> Refusal:
    return Refusal(400, message, code, param)


def too_large(size: int | None = None) -> Refusal:
    limit = f"{MAX_BODY_BYTES / (1024 * 1024):g} MiB"
    got = f" (this one has {size / (1024 * 1024):.1f} MiB)" if size is not None else ""
    return Refusal(413, f"The request body is larger than this gateway accepts: at most {limit}{got}. "
                        "Send a shorter prompt or fewer attachments.", "request_too_large")


# Parsing --------------------------------------------------------------------------------------

def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class Unrepresentable(ValueError):
    """A JSON value Python's parser reads one way and LiteLLM's (orjson) another, or refuses."""


INT_LIMIT = 2 ** 63  # orjson reads larger integers as floats (losing digits), or refuses them


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 is inf to Python, an error to orjson
        raise Unrepresentable(f"The request body holds a number too large to represent ({text[:40]}): "
                              "numbers must be within about ±1.8e308.")
    return value


def _int(text: str) -> int:
    value = int(text) if len(text) <= 20 else None
    if value is None or not -INT_LIMIT <= value < INT_LIMIT:
        raise Unrepresentable(f"The request body holds an integer outside the 64-bit range ({text[:40]}"
                              f"{'...' if len(text) > 40 else ''}): integers must be between -2^63 and 2^63-1.")
    return value


DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float, parse_int=_int)
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # cheap: most bodies have none
SURROGATE = re.compile("[\ud800-\udfff]")  # after decoding, a paired escape is one character: these are lone


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """The request body as a JSON object, or a Refusal that says what is wrong with it."""
    if len(raw) > MAX_BODY_BYTES:
        raise too_large(len(raw))
    kind = media_type(content_type)
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Refusal(400, f"The request body must be JSON, sent with 'Content-Type: application/json' "
                           f"(this request says '{kind[:60]}').", "unsupported_content_type")
    if not raw.strip():
        raise invalid("The request body is empty: send a JSON object with 'model' and the request's fields.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"The request body is not valid UTF-8 (byte {exc.start}).", code="invalid_encoding") from None
    try:
        body = DECODER.decode(text)
    except RecursionError:
        raise too_deep() from None
    except Unrepresentable as exc:
        raise invalid(str(exc), code="invalid_number") from None
    except ValueError as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise invalid(f"The request body is not valid JSON{where}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, not a JSON {json_type(body)}.")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth(body) > MAX_DEPTH:  # counting is much cheaper
        raise too_deep()
    if SURROGATE_ESCAPE.search(raw):
        lone_surrogates(body)
    return body


def lone_surrogates(body: dict[str, Any]) -> None:
    """Refuse an escaped unpaired surrogate (`"\\ud800"`) anywhere in the body: Python's parser
    accepts it, orjson (LiteLLM's) refuses it with its own words, and no provider can encode it."""
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for name, value in item.items():
                here = f"{where}.{name}" if where else name
                if SURROGATE.search(name):
                    raise surrogate(here)
                stack.append((value, here))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))
        elif isinstance(item, str) and SURROGATE.search(item):
            raise surrogate(where)


def surrogate(where: str) -> Refusal:
    place = SURROGATE.sub("?", where)[:120]
    return invalid(f"The request body holds an invalid Unicode escape in '{place}' (an unpaired surrogate such "
                   "as \\ud800 without its pair).", code="invalid_encoding")


def too_deep() -> Refusal:
    return invalid(f"The request body is nested too deeply (at most {MAX_DEPTH} levels of arrays and objects).",
                   code="too_deeply_nested")


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def encode(body: dict[str, Any]) -> bytes:
    """The body LiteLLM will read."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("The request body holds an invalid Unicode escape (an unpaired surrogate).",
                      code="invalid_encoding") from None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


# Field checks ---------------------------------------------------------------------------------

Check = Callable[[Any, str], None]


def wrong(param: str, expected: str, value: Any) -> Refusal:
    return invalid(f"'{param}' must be {expected}, not {json_type(value)}.", param)


def string(max_length: int = 100_000_000, *, empty: bool = True) -> Check:
    def check(value: Any, param: str) -> None:
        if not isinstance(value, str):
            raise wrong(param, "a string", value)
        if not empty and not value.strip():
            raise invalid(f"'{param}' must not be empty.", param)
        if len(value) > max_length:
            raise invalid(f"'{param}' is too long (at most {max_length} characters).", param)
    return check


def boolean(value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise wrong(param, "true or false", value)


def integer(low: int = 0, high: int | None = None) -> Check:
    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong(param, "an integer", value)
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise invalid(f"'{param}' must be {bounds} (got {value}).", param)
    return check


def number(low: float, high: float) -> Check:
    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong(param, "a number", value)
        if not low <= value <= high:
            raise invalid(f"'{param}' must be between {low:g} and {high:g} (got {value:g}).", param)
    return check


def obj(value: Any, param: str) -> None:
    if not isinstance(value, dict):
        raise wrong(param, "an object", value)


def array(value: Any, param: str) -> None:
    if not isinstance(value, list):
        raise wrong(param, "an array", value)


def objects(value: Any, param: str) -> None:
    array(value, param)
    for i, item in enumerate(value):
        obj(item, f"{param}[{i}]")


def any_of(*checks: Check, expected: str) -> Check:
    def check(value: Any, param: str) -> None:
        for candidate in checks:
            try:
                candidate(value, param)
                return
            except Refusal:
                continue
        raise wrong(param, expected, value)
    return check


def strings(value: Any, param: str) -> None:
    array(value, param)
    for i, item in enumerate(value):
        string()(item, f"{param}[{i}]")


def stop(value: Any, param: str) -> None:
    if value is None:
        return
    any_of(string(), strings, expected="a string or an array of strings")(value, param)
    if isinstance(value, list) and len(value) > 16:
        raise invalid(f"'{param}' may hold at most 16 sequences.", param)


def nullable(check: Check) -> Check:
    def inner(value: Any, param: str) -> None:
        if value is not None:
            check(value, param)
    return inner


def anything(value: Any, param: str) -> None:
    """Any JSON value (already bounded in size and depth); the provider checks it."""


# Content parts -------------------------------------------------------------------------------
# Each route's part types, each with its required fields (and optional ones whose type is checked).
# LiteLLM answers a part of a type it does not know, or one without its field, with a 500 and its own
# words ("Invalid user message at index 0 ..."); here it is a 400 that names the part. Unknown extra
# fields of a known part are left to the provider; `cache_control` (Cline, Anthropic caching) is
# admitted on every part.

Part = tuple[dict[str, Check], dict[str, Check], tuple[str, ...]]  # required, optional, at least one of


def part(required: dict[str, Check] | None = None, optional: dict[str, Check] | None = None,
         one_of: tuple[str, ...] = ()) -> Part:
    return required or {}, optional or {}, one_of


def fetched_url(value: Any, param: str) -> None:
    """A URL LiteLLM may download from the gateway's host (gateway/plugin/urls.py)."""
    string()(value, param)
    why = urls.refused(value)
    if why is not None:
        raise invalid(f"'{param}' cannot be fetched by this gateway: {why}. Send the content inline "
                      "(a data: URL or base64) or a public https URL.", param, "url_not_allowed")


def image_url(value: Any, param: str) -> None:
    if isinstance(value, str):
        fetched_url(value, param)
        return
    obj(value, param)
    if "url" not in value:
        raise invalid(f"'{param}.url' is missing.", f"{param}.url")
    fetched_url(value["url"], f"{param}.url")


def source(value: Any, param: str) -> None:
    """An Anthropic image or document source: base64, text, a file id, or a URL LiteLLM downloads."""
    obj(value, param)
    if "url" in value:
        fetched_url(value["url"], f"{param}.url")


def input_audio(value: Any, param: str) -> None:
    obj(value, param)
    for name in ("data", "format"):
        if name not in value:
            raise invalid(f"'{param}.{name}' is missing.", f"{param}.{name}")
        string()(value[name], f"{param}.{name}")


def file_part(value: Any, param: str) -> None:
    obj(value, param)
    for name in ("file_data", "file_id", "filename", "format"):
        if name in value:
            string()(value[name], f"{param}.{name}")


TEXT = part({"text": string()})
CHAT_PARTS: dict[str, dict[str, Part]] = {
    "system": {"text": TEXT}, "developer": {"text": TEXT}, "function": {"text": TEXT},
    "user": {"text": TEXT, "image_url": part({"image_url": image_url}),
             "input_audio": part({"input_audio": input_audio}), "file": part({"file": file_part})},
    "assistant": {"text": TEXT, "refusal": part({"refusal": string()}),
                  "thinking": part({"thinking": string()}, {"signature": string()}),
                  "redacted_thinking": part({"data": string()})},
    "tool": {"text": TEXT, "image_url": part({"image_url": image_url})},
}


def anthropic_blocks(value: Any, param: str) -> None:
    """What a `tool_result` holds: a string or text, image, document and search result blocks."""
    parts(ANTHROPIC_RESULT_PARTS, "a string or an array of content blocks")(value, param)


ANTHROPIC_RESULT_PARTS: dict[str, Part] = {
    "text": TEXT, "image": part({"source": source}),
    "document": part({"source": source}, {"title": nullable(string())}),
    "search_result": part({"source": string(), "title": string(), "content": objects}),
}
# Not admitted: `mcp_tool_use` / `mcp_tool_result` (MCP servers are the proxy's) and `container_upload`
# (a file in a provider container: server state).
ANTHROPIC_PARTS: dict[str, Part] = {
    **ANTHROPIC_RESULT_PARTS,
    "tool_use": part({"id": string(), "name": string(), "input": obj}),
    "tool_result": part({"tool_use_id": string()}, {"content": anthropic_blocks, "is_error": nullable(boolean)}),
    "thinking": part({"thinking": string(), "signature": string()}),
    "redacted_thinking": part({"data": string()}),
    "server_tool_use": part({"id": string(), "name": string(), "input": obj}),
    "web_search_tool_result": part({"tool_use_id": string(), "content": anything}),
}
ANTHROPIC_SYSTEM_PARTS: dict[str, Part] = {"text": TEXT}


RESPONSES_PARTS: dict[str, Part] = {
    "input_text": TEXT, "output_text": TEXT, "refusal": part({"refusal": string()}),
    "input_image": part({}, {"image_url": fetched_url, "file_id": string(), "detail": string(32)},
                        ("image_url", "file_id")),
    "input_file": part({}, {"file_data": string(), "file_id": string(), "file_url": fetched_url,
                            "filename": string()}, ("file_data", "file_id", "file_url")),
    "input_audio": part({"input_audio": input_audio}),
}


def check_part(value: dict[str, Any], where: str, spec: Part, noun: str = "part") -> None:
    required, optional, one_of = spec
    for name, check in required.items():
        if name not in value:
            raise invalid(f"'{where}.{name}' is missing: a '{value.get('type')}' {noun} needs it.", f"{where}.{name}")
        check(value[name], f"{where}.{name}")
    for name, check in optional.items():
        if name in value:
            check(value[name], f"{where}.{name}")
    if one_of and not any(name in value for name in one_of):
        raise invalid(f"'{where}' needs one of {', '.join(one_of)}.", where)
    if "cache_control" in value and value["cache_control"] is not None:
        obj(value["cache_control"], f"{where}.cache_control")


def parts(allowed: dict[str, Part], expected: str = "a string or an array of content parts") -> Check:
    """A string, or an array of content parts of the given types."""
    def check(value: Any, param: str) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, list):
            raise wrong(param, expected, value)
        for i, part in enumerate(value):
            where = f"{param}[{i}]"
            obj(part, where)
            kind = part.get("type")
            if not isinstance(kind, str) or kind not in allowed:
                got = f"'{kind[:40]}'" if isinstance(kind, str) else ("missing" if kind is None else json_type(kind))
                raise invalid(f"'{where}.type' must be one of {', '.join(allowed)} (got {got}).", f"{where}.type")
            check_part(part, where, allowed[kind])
    return check


RESPONSES_ROLES = ("user", "assistant", "system", "developer")
RESULT = any_of(string(), objects, expected="a string or an array of content parts")
# The items a responses `input` may hold, besides messages. Not admitted: `item_reference` (an item
# the provider stored: server state, like `previous_response_id`), and the calls of the tools this
# gateway refuses (MCP, computer, local shell, code interpreter, file search; see RESPONSES_TOOLS).
RESPONSES_ITEMS: dict[str, Part] = {
    "function_call": part({"call_id": string(), "name": string(), "arguments": string()}),
    "function_call_output": part({"call_id": string(), "output": RESULT}),
    "custom_tool_call": part({"call_id": string(), "name": string(), "input": string()}),
    "custom_tool_call_output": part({"call_id": string(), "output": RESULT}),
    "reasoning": part({"summary": objects}, {"encrypted_content": nullable(string())}),
    "web_search_call": part({"id": string()}),
}


def responses_input(value: Any, param: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise wrong(param, "a string or an array of items", value)
    for i, item in enumerate(value):
        where = f"{param}[{i}]"
        obj(item, where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            if item.get("role") not in RESPONSES_ROLES:
                raise invalid(f"'{where}.role' must be one of {', '.join(RESPONSES_ROLES)}.", f"{where}.role")
            if "content" not in item:
                raise invalid(f"'{where}.content' is missing.", f"{where}.content")
            parts(RESPONSES_PARTS)(item["content"], f"{where}.content")
        elif isinstance(kind, str) and kind in RESPONSES_ITEMS:
            check_part(item, where, RESPONSES_ITEMS[kind], "item")
        else:
            got = f"'{kind[:40]}'" if isinstance(kind, str) else ("missing" if kind is None else json_type(kind))
            raise invalid(f"'{where}.type' must be one of message, {', '.join(RESPONSES_ITEMS)} (got {got}).",
                          f"{where}.type")


# Tools ----------------------------------------------------------------------------------------
# A tool the provider only describes to the model (a function, a custom tool) is admitted. Tools that
# LiteLLM or the provider would run with state or servers of their own are refused with a 400 naming
# `tools[i].type`:
# - `mcp` everywhere: LiteLLM's proxy runs MCP tools itself, against its own MCP servers
#   (`server_url: "litellm_proxy"`) or a URL of the caller's choosing (the gateway's network);
# - chat completions: only `function` (what the OpenAI SDK and Cline send);
# - responses: `function`, `custom` and web search (priced per call by LiteLLM); not `mcp`,
#   `computer_use_preview`/`computer`, `code_interpreter` (a provider container), `local_shell`/`shell`,
#   `file_search` (vector stores: server state, and LiteLLM resolves their ids in its own registry),
#   `image_generation` (its images are not in the cost LiteLLM reports, so a budget would not see them);
# - messages (Anthropic): custom tools (a name, no type or `custom`) and Anthropic's typed tools
#   (`web_search_...`, `text_editor_...`, `bash_...`, `computer_...`, which the client runs), but not
#   `mcp...` types nor `code_execution_...` (a provider container, unpriced); `mcp_servers` is a control
#   field (CONTROL).
REFUSED_TOOL_WHY = ("MCP, computer, shell, code interpreter, file search and image generation tools need servers "
                    "or state this gateway does not lend to requests")
RESPONSES_TOOLS = frozenset({"function", "custom", "web_search", "web_search_preview",
                             "web_search_preview_2025_03_11", "web_search_2025_08_26"})
NAMED = frozenset({"function", "custom"})
ANTHROPIC_REFUSED_TOOLS = ("mcp", "code_execution")


def named(value: dict[str, Any], where: str) -> None:
    if "name" not in value:
        raise invalid(f"'{where}.name' is missing: each tool needs a name.", f"{where}.name")
    string(256, empty=False)(value["name"], f"{where}.name")


def tool_type(tool: dict[str, Any], where: str, allowed: str) -> str:
    kind = tool.get("type")
    got = f"'{kind[:40]}'" if isinstance(kind, str) else ("missing" if kind is None else json_type(kind))
    return f"'{where}.type' must be {allowed} (got {got}): {REFUSED_TOOL_WHY}."


def chat_tools(value: Any, param: str) -> None:
    objects(value, param)
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        if tool.get("type") != "function":
            raise invalid(tool_type(tool, where, "'function'"), f"{where}.type")
        if "function" not in tool:
            raise invalid(f"'{where}.function' is missing: a function tool needs it.", f"{where}.function")
        obj(tool["function"], f"{where}.function")
        named(tool["function"], f"{where}.function")


def chat_functions(value: Any, param: str) -> None:
    objects(value, param)
    for i, function in enumerate(value):
        named(function, f"{param}[{i}]")


def responses_tools(value: Any, param: str) -> None:
    objects(value, param)
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        kind = tool.get("type")
        if not isinstance(kind, str) or kind not in RESPONSES_TOOLS:
            raise invalid(tool_type(tool, where, f"one of {', '.join(sorted(RESPONSES_TOOLS))}"), f"{where}.type")
        if kind in NAMED:
            named(tool, where)


def anthropic_tools(value: Any, param: str) -> None:
    objects(value, param)
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        kind = tool.get("type")
        if kind is not None and (not isinstance(kind, str) or kind.startswith(ANTHROPIC_REFUSED_TOOLS)):
            raise invalid(tool_type(tool, where, "a custom tool or an Anthropic tool other than mcp... and "
                                                 "code_execution..."), f"{where}.type")
        named(tool, where)


CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def chat_messages(value: Any, param: str) -> None:
    if not isinstance(value, list):
        raise wrong(param, "an array of messages (objects with 'role' and 'content')", value)
    if not value:
        raise invalid(f"'{param}' must hold at least one message.", param)
    for i, message in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise wrong(where, "a message object with 'role' and 'content'", message)
        if "role" not in message:
            raise invalid(f"'{where}.role' is missing: each message needs a role ({', '.join(sorted(CHAT_ROLES))}).",
                          f"{where}.role")
        role = message["role"]
        if not isinstance(role, str) or role not in CHAT_ROLES:
            raise invalid(f"'{where}.role' must be one of {', '.join(sorted(CHAT_ROLES))}.", f"{where}.role")
        content = message.get("content")
        if content is not None:
            parts(CHAT_PARTS[role])(content, f"{where}.content")
        elif role not in ("assistant", "function") and "content" not in message:
            raise invalid(f"'{where}.content' is missing.", f"{where}.content")
        if "tool_calls" in message and message["tool_calls"] is not None:
            objects(message["tool_calls"], f"{where}.tool_calls")


def anthropic_messages(value: Any, param: str) -> None:
    if not isinstance(value, list) or not value:
        raise wrong(param, "a non-empty array of messages (objects with 'role' and 'content')", value)
    for i, message in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise wrong(where, "a message object with 'role' and 'content'", message)
        if message.get("role") not in ("user", "assistant"):
            raise invalid(f"'{where}.role' must be 'user' or 'assistant'.", f"{where}.role")
        if "content" not in message:
            raise invalid(f"'{where}.content' is missing.", f"{where}.content")
        parts(ANTHROPIC_PARTS, "a string or an array of content blocks")(message["content"], f"{where}.content")


def embedding_input(value: Any, param: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise wrong(param, "a string or a non-empty array of strings or token arrays", value)
    for i, item in enumerate(value):
        if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
            continue
        if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            continue
        raise wrong(f"{param}[{i}]", "a string or an array of token ids", item)


def prompt(value: Any, param: str) -> None:
    if isinstance(value, str):
        return
    embedding_input(value, param)


def one_of(*choices: str) -> Check:
    def check(value: Any, param: str) -> None:
        if value not in choices:
            raise invalid(f"'{param}' must be one of {', '.join(choices)}.", param)
    return check


def logit_bias(value: Any, param: str) -> None:
    obj(value, param)
    for token, bias in value.items():
        number(-100, 100)(bias, f"{param}.{token}")


def tool_choice(value: Any, param: str) -> None:
    any_of(string(64), obj, expected="a string ('auto', 'none', 'required') or an object")(value, param)


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
