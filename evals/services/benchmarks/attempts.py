"""One dataset item through one route, on the pool (HTTP to the gateway
only): the route's answer, the deterministic metrics and the judges on it,
and whether the item passes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evals import metrics as m
from evals.gateway_client import GatewayCallError, GatewayClient
from evals.judge import JudgeParseError, ScoreSpec, judge, render
from evals.models import DatasetItem, EvaluatorVersion
from gateway.models import ModelRoute


class BudgetRefused(Exception):
    """The gateway refused a call for budget: no further calls can succeed."""


@dataclass
class Judge:
    """An evaluator version as a run uses it."""

    version: EvaluatorVersion
    spec: ScoreSpec
    config_id: str | None = None

    @property
    def name(self) -> str:
        return self.version.evaluator.name


@dataclass
class Outcome:
    output: str = ""
    latency_ms: float | None = None
    cost: float = 0.0
    trace_id: str = ""
    error: str = ""
    metrics: dict[str, bool | None] = field(default_factory=dict)
    evaluators: dict[str, dict[str, Any]] = field(default_factory=dict)
    passed: bool | None = False


def messages_of(value: Any) -> list[dict[str, Any]]:
    """The chat messages of an item's input: a text is the user's message; a
    list of messages or `{"messages": [...]}` is sent as is; anything else is
    sent as JSON in one user message."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and value and all(isinstance(x, dict) and "role" in x for x in value):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return [{"role": "user", "content": text}]


def decide(metrics: dict[str, bool | None], evaluators: dict[str, dict[str, Any]]) -> bool | None:
    """An item passes when every metric and evaluator that gives a verdict passes;
    it is undecided (None) when a judge failed and nothing else failed."""
    verdicts = [v for v in metrics.values() if v is not None]
    verdicts += [e["passed"] for e in evaluators.values() if "error" not in e and e.get("passed") is not None]
    if any(v is False for v in verdicts):
        return False
    return None if any("error" in e for e in evaluators.values()) else True


def attempt(gateway: GatewayClient, judges: list[Judge], metrics: list[m.Metric], item: DatasetItem,
            route: ModelRoute) -> Outcome:
    """One item through one route, scored."""
    try:
        answer = gateway.chat(route.name, messages_of(item.input), purpose="benchmark")
    except GatewayCallError as exc:
        if exc.budget:
            raise BudgetRefused(str(exc)) from None
        return Outcome(error=str(exc)[:500])
    output = answer.content or answer.tool_arguments or ""
    out = Outcome(output=output, latency_ms=answer.latency_ms, cost=answer.cost, trace_id=answer.trace_id,
                  metrics=m.evaluate(metrics, output, item.expected_output))
    source = {"input": item.input, "expected_output": item.expected_output, "metadata": item.metadata or {},
              "output": output, "item_id": item.external_id, "route": route.name}
    for j in judges:
        v = j.version
        try:
            result = judge(gateway, route=v.judge_route.name, spec=j.spec, output_mode=v.output_mode,
                           prompt=render(v.prompt_template, v.variables, source))
        except JudgeParseError as exc:
            out.evaluators[j.name] = {"error": str(exc)[:500], "cost": exc.cost}
        except GatewayCallError as exc:
            if exc.budget:
                raise BudgetRefused(str(exc)) from None
            out.evaluators[j.name] = {"error": f"The judge call failed: {exc}"[:500], "cost": 0.0}
        else:
            out.evaluators[j.name] = {"value": result.value, "label": result.label, "comment": result.comment,
                                      "passed": j.spec.passed(result.value, result.label),
                                      "cost": result.cost, "trace_id": result.trace_id}
    out.passed = decide(out.metrics, out.evaluators)
    return out
