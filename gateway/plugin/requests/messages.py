"""Messages and the other inputs of each API (chat messages, Anthropic messages, embeddings input,
completions prompt)."""

from __future__ import annotations

from typing import Any

from gateway.plugin.requests.checks import objects, wrong
from gateway.plugin.requests.errors import invalid
from gateway.plugin.requests.parts import ANTHROPIC_PARTS, CHAT_PARTS, parts

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
