"""A stand-in for a paid LLM provider: an OpenAI-compatible
`/v1/chat/completions` server whose answers a test scripts, with an optional
fixed latency. The gateway reaches it as an `openai_compatible` deployment,
so every call still goes through the real LiteLLM proxy and the plugin.

An answer is a str (the assistant's text) or a dict: an assistant message in
OpenAI's format (`content`, `tool_calls`), with optional `usage` and
`finish_reason` beside it (tests/agent_script.py builds them). Without a
`usage`, the stand-in reports USAGE (50 prompt tokens), or with
`count_prompt=True` roughly what it was sent (`rough_usage`: the JSON of the
messages and tools / 4), so that token bounds mean something."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any]], "str | dict[str, Any]"]
USAGE = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}


def rough_usage(body: dict[str, Any], answer: str | dict[str, Any]) -> dict[str, int]:
    """About what a real model would count: 4 characters a token, of the messages and tools sent and of the answer."""
    sent = len(json.dumps([body.get("messages") or [], body.get("tools") or []], ensure_ascii=False))
    return {"prompt_tokens": max(1, sent // 4), "completion_tokens": max(1, len(json.dumps(answer)) // 4)}


def repairing_judge(score: float = 4) -> Answer:
    """Answers prose at first, and valid JSON when asked to repair."""

    def answer(body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        if "could not be used" in str(last):
            return json.dumps({"reasoning": "repaired", "score": score})
        return "I would say it is pretty good, maybe a four."

    return answer


class LLMStandin:
    def __init__(self, answer: Answer, latency: float = 0.0, *, count_prompt: bool = False) -> None:
        self.answer, self.latency, self.count_prompt = answer, latency, count_prompt
        self.requests: list[dict[str, Any]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else keep-alive answers wait ~40 ms for delayed ACKs
            wbufsize = 1 << 16  # headers and body in one write

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                standin.requests.append(body)
                if standin.latency:
                    time.sleep(standin.latency)
                answer = standin.answer(body)
                if standin.count_prompt and not (isinstance(answer, dict) and answer.get("usage")):
                    answer = ({"content": answer} if isinstance(answer, str) else answer) | {
                        "usage": rough_usage(body, answer)}
                message, finish, usage = standin.message(answer)
                reply = json.dumps({
                    "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "standin"),
                    "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                    "usage": usage}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def message(answer: str | dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """The assistant message, finish reason and usage of an answer."""
        if isinstance(answer, str):
            return {"role": "assistant", "content": answer}, "stop", USAGE
        message = {k: v for k, v in answer.items() if k not in ("usage", "finish_reason")}
        message = {"role": "assistant", "content": None} | message
        usage = answer.get("usage") or USAGE
        usage = usage | {"total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)}
        finish = answer.get("finish_reason") or ("tool_calls" if message.get("tool_calls") else "stop")
        return message, finish, usage

    def start(self) -> LLMStandin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
