"""The evidence check: a finding (or a follow-up answer's citation) stands
only on what this report's own tool calls returned.

A finding is kept only if every step it cites is a data tool step of this
report that did not fail, every trace id it cites is among the traces those
steps' results hold (the tools are scoped to the project by the portal, so a
trace of another project, or one that does not exist, is never there), and
its count is no more than those results show: a search's `matched`, a row's
`traces`, or the cited traces themselves. Its share is count / the window's
traces (`window_total`), its cost estimated from the cited traces' costs.
The model's word is never the evidence: a check that fails says why, and the
finding is dropped and counted."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils.text import slugify

from evals.agent.prompts import CHANGE_KINDS

CONTROL_TOOLS = frozenset({"record_finding", "finish_report", "answer"})
MAX_TRACE_IDS = 50
MAX_STEPS = 20
TRACE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True)
class StepView:
    """What the check reads of an `AgentStep`."""

    index: int
    kind: str
    tool_name: str = ""
    error: str = ""
    trace_ids: tuple[str, ...] = ()
    data: Any = None


@dataclass
class Checked:
    """A finding that held: its fields, cleaned, and what the check computed."""

    title: str
    key: str
    problem: str
    count: int
    change_kind: str
    change: str
    trace_ids: list[str]
    steps: list[int]
    share: float | None = None
    cost: Decimal | None = None


@dataclass
class Refused(Exception):
    """The evidence did not hold; `reason` is what the model and the report are told."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)


class Invalid(ValueError):
    """The finding's arguments are not a finding (a tool error the model may fix, not a dropped finding)."""


def text(arguments: Mapping[str, Any], name: str, limit: int) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"'{name}' must be a non-empty string")
    return value.strip()[:limit]


def id_list(value: Any, name: str, limit: int, kind: type) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise Invalid(f"'{name}' must be a non-empty list")
    if len(value) > limit:
        raise Invalid(f"'{name}' may hold at most {limit} items")
    if kind is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise Invalid(f"'{name}' must hold step numbers (integers)")
    if kind is str and not all(isinstance(v, str) and v for v in value):
        raise Invalid(f"'{name}' must hold trace ids (strings)")
    return list(dict.fromkeys(value))


def rows(data: Any) -> Iterator[dict[str, Any]]:
    """The rows of a tool's data: dicts in its lists, at the top or one level down (groups of a comparison),
    and a single trace (read_trace's `trace`)."""
    if not isinstance(data, dict):
        return
    if isinstance(data.get("trace"), dict):
        yield data["trace"]
    for value in data.values():
        if isinstance(value, list):
            yield from (row for row in value if isinstance(row, dict))
        elif isinstance(value, dict):
            for inner in value.values():
                if isinstance(inner, list):
                    yield from (row for row in inner if isinstance(row, dict))


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def supported_count(steps: Iterable[StepView]) -> int:
    """The most traces these results show: a search's `matched`, a row's `traces`, or the traces they hold."""
    best = 0.0
    for step in steps:
        best = max(best, len(step.trace_ids))
        data = step.data if isinstance(step.data, dict) else {}
        best = max(best, number(data.get("matched")) or 0)
        for row in rows(data):
            best = max(best, number(row.get("traces")) or 0)
    return int(best)


def window_total(steps: Iterable[StepView]) -> int | None:
    totals = [number(s.data.get("window_total")) for s in steps if isinstance(s.data, dict)]
    known = [int(t) for t in totals if t]
    return max(known) if known else None


def estimated_cost(steps: Iterable[StepView], trace_ids: list[str], count: int) -> Decimal | None:
    """The cited traces' mean cost (by the rows that carry it) times the count."""
    wanted, costs = set(trace_ids), {}
    for step in steps:
        for row in rows(step.data):
            cost = number(row.get("cost"))
            if row.get("id") in wanted and cost is not None and cost >= 0:
                costs[row["id"]] = cost
    if not costs:
        return None
    return (Decimal(str(sum(costs.values()) / len(costs))) * count).quantize(Decimal("0.000000001"))


def cited_steps(cited: list[int], by_index: Mapping[int, StepView]) -> list[StepView]:
    """The cited steps, each a data tool step of this report that did not fail; else Refused."""
    found = []
    for index in cited:
        step = by_index.get(index)
        if step is None or step.kind != "tool":
            raise Refused(f"step {index} is not a tool step of this report")
        if step.tool_name in CONTROL_TOOLS:
            raise Refused(f"step {index} is a {step.tool_name} call, not a data tool's result")
        if step.error:
            raise Refused(f"step {index} failed ({step.error[:100]}): its result shows nothing")
        found.append(step)
    return found


def held_traces(trace_ids: list[str], steps: list[StepView]) -> None:
    """Every cited trace is in the cited steps' results; else Refused."""
    held = {t for s in steps for t in s.trace_ids}
    missing = [t for t in trace_ids if t not in held]
    if missing:
        shown = ", ".join(str(t)[:64] for t in missing[:5])
        raise Refused(f"trace(s) {shown} are not in the results of the cited steps", {"missing": missing[:20]})


def check_finding(arguments: Mapping[str, Any], by_index: Mapping[int, StepView]) -> Checked:
    """A finding that holds, or Invalid (not a finding) or Refused (the evidence does not hold)."""
    title = text(arguments, "title", 200)
    problem, change = text(arguments, "problem", 4000), text(arguments, "change", 4000)
    kind = arguments.get("change_kind")
    if kind not in CHANGE_KINDS:
        raise Invalid(f"'change_kind' must be one of {', '.join(CHANGE_KINDS)}")
    count = arguments.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise Invalid("'count' must be a positive integer")
    trace_ids = id_list(arguments.get("trace_ids"), "trace_ids", MAX_TRACE_IDS, str)
    cited = id_list(arguments.get("steps"), "steps", MAX_STEPS, int)
    steps = cited_steps(cited, by_index)
    held_traces(trace_ids, steps)
    supported = supported_count(steps)
    if count > supported:
        raise Refused(f"count {count} is more than the cited steps show ({supported})",
                      {"count": count, "supported": supported})
    total = window_total(steps)
    return Checked(title=title, key=slugify(title)[:120] or "finding", problem=problem, count=count,
                   change_kind=str(kind), change=change, trace_ids=trace_ids, steps=cited,
                   share=min(1.0, count / total) if total else None,
                   cost=estimated_cost(steps, trace_ids, count))


def check_citations(evidence: Any, by_index: Mapping[int, StepView]) -> tuple[list[dict[str, Any]], list[str]]:
    """An answer's evidence [{trace_id, steps}]: the items that hold, and why each other one did not."""
    if not isinstance(evidence, list):
        return [], ["'evidence' is not a list"] if evidence is not None else []
    kept, refused = [], []
    for item in evidence[:MAX_TRACE_IDS]:
        try:
            if not isinstance(item, dict):
                raise Invalid("an evidence item must be an object {trace_id, steps}")
            trace_id = item.get("trace_id")
            if not isinstance(trace_id, str) or not TRACE_ID.match(trace_id):
                raise Invalid("'trace_id' must be a trace id")
            cited = id_list(item.get("steps"), "steps", MAX_STEPS, int)
            held_traces([trace_id], cited_steps(cited, by_index))
        except (Invalid, Refused) as exc:
            refused.append(exc.reason if isinstance(exc, Refused) else str(exc))
            continue
        kept.append({"trace_id": trace_id, "steps": cited})
    refused += [f"{len(evidence) - MAX_TRACE_IDS} items beyond the first {MAX_TRACE_IDS}"] \
        if len(evidence) > MAX_TRACE_IDS else []
    return kept, refused
