"""Scripted agents for the LLM stand-in (tests/llm_standin.py) and the bench.

A `Script` is a list of turns; each turn is a function of the request body
(what the loop sent: its messages, with the tool results so far) returning
the assistant message, so a script reads the data the tools returned and acts
on it as a real model would: it searches, reads the result's trace ids and
cites them. The turn is chosen by how many assistant messages follow the
request's last user message, so that a retried request gets the same turn and
a follow-up question (a new conversation) starts at its own first turn.
`count_prompt=True`: a reply without usage reports roughly what it was sent
(tests/llm_standin.py rough_usage), as a real model's prompt grows.

    Script([lambda body: call("search_traces", {"limit": 5}),
            lambda body: call("record_finding", finding(body, step=last_step(body))),
            lambda body: call("finish_report", {"summary": "done"})],
           answer=[...])
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from tests.llm_standin import rough_usage

Message = dict[str, Any]
Turn = Callable[[dict[str, Any]], "Message | str"]


def usage(prompt: int = 50, completion: int = 20) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion}


def calls(*pairs: tuple[str, Any], content: str | None = None, tokens: dict[str, int] | None = None) -> Message:
    """An assistant message asking for tool calls; an argument that is a str is sent as is (malformed JSON)."""
    message: Message = {"role": "assistant", "content": content, "tool_calls": [
        {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
         "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
        for name, args in pairs]}
    if tokens:
        message["usage"] = tokens
    return message


def call(name: str, args: Any, **kwargs: Any) -> Message:
    return calls((name, args), **kwargs)


def text(content: str, tokens: dict[str, int] | None = None) -> Message:
    message: Message = {"role": "assistant", "content": content}
    if tokens:
        message["usage"] = tokens
    return message


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results of the conversation so far, as the loop framed them ({step, tool, data | error})."""
    out = []
    for m in body.get("messages", []):
        if m.get("role") == "tool":
            try:
                out.append(json.loads(m["content"]))
            except (ValueError, TypeError):
                out.append({"raw": m.get("content")})
    return out


def last(body: dict[str, Any], tool: str | None = None) -> dict[str, Any]:
    """The last tool result (of `tool`)."""
    found = [r for r in tool_results(body) if tool is None or r.get("tool") == tool]
    assert found, f"no result of {tool or 'any tool'} in the conversation"
    return found[-1]


def row_ids(result: dict[str, Any]) -> list[str]:
    data = result.get("data") or {}
    return [r["id"] for r in data.get("rows", []) if isinstance(r, dict) and r.get("id")]


def finding_from(result: dict[str, Any], *, title: str = "Slow answers", count: int | None = None,
                 trace_ids: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """record_finding's arguments citing a search result: its rows' ids and its count (`matched`)."""
    ids = list(trace_ids) if trace_ids is not None else row_ids(result)[:5]
    matched = (result.get("data") or {}).get("matched", len(ids))
    return {"title": title, "problem": f"{title}: seen in the traces found.", "count": count or matched,
            "change_kind": "prompt", "change": "Tighten the system prompt.", "trace_ids": ids,
            "steps": [result["step"]]} | extra


class Script:
    """The stand-in's answer function: `turns` for the investigation, `answer` for follow-up questions
    (a request offering the `answer` tool). Past the end, a script ends with a plain text message."""

    def __init__(self, turns: Sequence[Turn], answer: Sequence[Turn] = (), *,
                 tokens: dict[str, int] | None = None, count_prompt: bool = False) -> None:
        self.turns, self.answer_turns, self.tokens = list(turns), list(answer), tokens
        self.count_prompt = count_prompt
        self.requests: list[dict[str, Any]] = []

    @staticmethod
    def position(body: dict[str, Any]) -> int:
        messages = body.get("messages", [])
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        after = messages[users[-1] + 1:] if users else messages
        return sum(1 for m in after if m.get("role") == "assistant")

    def __call__(self, body: dict[str, Any]) -> Message | str:
        self.requests.append(body)
        names = {t.get("function", {}).get("name") for t in body.get("tools") or []}
        turns = self.answer_turns if "answer" in names else self.turns
        n = self.position(body)
        reply = turns[n](body) if n < len(turns) else text("That is all I can say.")
        if self.tokens and isinstance(reply, dict) and "usage" not in reply:
            reply = reply | {"usage": self.tokens}
        if self.count_prompt and not (isinstance(reply, dict) and "usage" in reply):
            reply = (text(reply) if isinstance(reply, str) else reply) | {"usage": rough_usage(body, reply)}
        return reply
