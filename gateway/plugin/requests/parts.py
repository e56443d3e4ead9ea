"""Content parts of each API (and the responses API's input items), with the URLs LiteLLM would fetch."""

from __future__ import annotations

from typing import Any

from gateway.plugin import urls
from gateway.plugin.requests.checks import (
    Check,
    any_of,
    anything,
    boolean,
    nullable,
    obj,
    objects,
    string,
    wrong,
)
from gateway.plugin.requests.errors import invalid
from gateway.plugin.requests.parsing import json_type

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
