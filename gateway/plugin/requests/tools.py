"""The tools a request may declare. A tool the provider only describes to the model (a function, a
custom tool) is admitted; tools that LiteLLM or the provider would run with state or servers of their
own are refused with a 400 naming `tools[i].type`."""

from __future__ import annotations

from typing import Any

from gateway.plugin.requests.checks import obj, objects, string
from gateway.plugin.requests.errors import invalid
from gateway.plugin.requests.parsing import json_type

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
