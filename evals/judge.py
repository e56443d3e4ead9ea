"""LLM-as-judge: render an evaluator version's prompt from a trace (or a
dataset item and an answer), ask the judge route through the gateway for a
structured answer, parse and check it, and ask once more to repair an
answer that cannot be used."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from evals.gateway_client import Completion

VARIABLE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*}}")
MISSING = "(none)"
MAX_VALUE_CHARS = 20_000
MAX_VARIABLES = 20  # variables in a prompt template (each filled with up to MAX_VALUE_CHARS)
MAX_PROMPT_CHARS = 150_000  # a rendered judge prompt, template included


class ChatClient(Protocol):
    def chat(self, model: str, messages: list[dict[str, Any]], *, purpose: str = ..., **params: Any) -> Completion: ...


class JudgeParseError(Exception):
    """The judge's answer could not be used, even after one repair."""

    def __init__(self, message: str, cost: float) -> None:
        super().__init__(message)
        self.cost = cost


@dataclass
class Judgment:
    value: float | None
    label: str
    comment: str
    cost: float
    latency_ms: float
    repaired: bool
    trace_id: str


@dataclass(frozen=True)
class ScoreSpec:
    score_type: str
    min_value: float | None = None
    max_value: float | None = None
    labels: tuple[str, ...] = ()
    pass_threshold: float | None = None
    pass_labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, version: Any) -> ScoreSpec:
        return cls(version.score_type, version.min_value, version.max_value, tuple(version.labels or ()),
                   version.pass_threshold, tuple(str(x) for x in version.pass_labels or ()))

    def json_schema(self) -> dict[str, Any]:
        score: dict[str, Any]
        if self.score_type == "numeric":
            score = {"type": "number"}
            if self.min_value is not None:
                score["minimum"] = self.min_value
            if self.max_value is not None:
                score["maximum"] = self.max_value
        elif self.score_type == "boolean":
            score = {"type": "boolean"}
        else:
            score = {"type": "string", "enum": list(self.labels)}
        return {"type": "object", "properties": {"reasoning": {"type": "string"}, "score": score},
                "required": ["reasoning", "score"], "additionalProperties": False}

    def passed(self, value: float | None, label: str) -> bool | None:
        if self.score_type == "numeric":
            return None if value is None or self.pass_threshold is None else value >= self.pass_threshold
        if self.score_type == "boolean":
            wanted = self.pass_labels[0].lower() if self.pass_labels else "true"
            return label.lower() == wanted
        return label in self.pass_labels if self.pass_labels else None


def lookup(source: dict[str, Any], path: str) -> Any:
    value: Any = source
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def as_text(value: Any) -> str:
    if value is None:
        return MISSING
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1, default=str)
    return text[:MAX_VALUE_CHARS]


def render(template: str, mapping: dict[str, str], source: dict[str, Any]) -> str:
    """Fill `{{name}}` from `source`, through the version's mapping (a
    variable without one is read from the path of its own name). The prompt
    is built on shared workers, many at once: the values filled in share a
    budget of `MAX_PROMPT_CHARS`, so a template that repeats a variable
    cannot multiply a trace's text."""
    left = MAX_PROMPT_CHARS - len(template)

    def fill(m: re.Match[str]) -> str:
        nonlocal left
        text = as_text(lookup(source, mapping.get(m.group(1), m.group(1))))[:max(left, 0)]
        left -= len(text)
        return text

    return VARIABLE.sub(fill, template)


def template_problem(template: str) -> str | None:
    """Why a prompt template cannot be used, or None."""
    count = len(VARIABLE.findall(template))
    if count == 0:
        return "The prompt uses no variable ({{input}}, {{output}}, ...)."
    if count > MAX_VARIABLES:
        return f"The prompt uses variables {count} times; at most {MAX_VARIABLES}."
    return None


def extract_json(text: str) -> Any:
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            return json.loads(text[start:end + 1])
        raise


def parse(text: str, spec: ScoreSpec) -> tuple[float | None, str, str]:
    """(numeric value, label, reasoning) from the judge's answer, or ValueError saying why not."""
    try:
        data = extract_json(text)
    except ValueError:
        raise ValueError("the answer is not a JSON object") from None
    if not isinstance(data, dict) or "score" not in data:
        raise ValueError('the JSON object has no "score"')
    reasoning = str(data.get("reasoning") or data.get("explanation") or "")[:4000]
    score = data["score"]
    if spec.score_type == "numeric":
        if isinstance(score, bool) or not isinstance(score, (int, float, str)):
            raise ValueError("the score is not a number")
        try:
            value = float(score)
        except ValueError:
            raise ValueError("the score is not a number") from None
        if (spec.min_value is not None and value < spec.min_value) or \
                (spec.max_value is not None and value > spec.max_value):
            raise ValueError(f"the score {value:g} is outside the range {spec.min_value}..{spec.max_value}")
        return value, "", reasoning
    if spec.score_type == "boolean":
        if isinstance(score, str) and score.strip().lower() in ("true", "false"):
            score = score.strip().lower() == "true"
        if not isinstance(score, bool):
            raise ValueError("the score is not true or false")
        return float(score), str(score).lower(), reasoning
    label = next((x for x in spec.labels if x.lower() == str(score).strip().lower()), None)
    if label is None:
        raise ValueError(f"the score {str(score)[:50]!r} is not one of {', '.join(spec.labels)}")
    return float(spec.labels.index(label)), label, reasoning


def request_params(spec: ScoreSpec, output_mode: str) -> dict[str, Any]:
    schema = spec.json_schema()
    if output_mode == "tool_call":
        return {"tools": [{"type": "function", "function": {
            "name": "submit_score", "description": "Submit the score and the reasoning behind it.",
            "parameters": schema}}], "tool_choice": {"type": "function", "function": {"name": "submit_score"}}}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "score", "schema": schema,
                                                                        "strict": True}}}


def judge(client: ChatClient, *, route: str, prompt: str, spec: ScoreSpec, output_mode: str = "json_schema",
          max_tokens: int = 512) -> Judgment:
    params = {**request_params(spec, output_mode), "max_tokens": max_tokens, "temperature": 0}
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    first = client.chat(route, messages, **params)
    answer = first.tool_arguments or first.content
    try:
        value, label, reasoning = parse(answer, spec)
        return Judgment(value, label, reasoning, first.cost, first.latency_ms, False, first.trace_id)
    except ValueError as problem:
        repair = messages + [
            {"role": "assistant", "content": answer[:MAX_VALUE_CHARS]},
            {"role": "user", "content": f"Your answer could not be used: {problem}. Reply again with only a JSON "
                                        f"object that matches this schema: {json.dumps(spec.json_schema())}"}]
        second = client.chat(route, repair, **params)
        cost = first.cost + second.cost
        try:
            value, label, reasoning = parse(second.tool_arguments or second.content, spec)
        except ValueError as again:
            raise JudgeParseError(f"The judge's answer could not be used, even after a repair: {again}.",
                                  cost) from None
        return Judgment(value, label, reasoning, cost, first.latency_ms + second.latency_ms, True, second.trace_id)
