"""The evidence check: a finding (or a follow-up answer's citation) stands
only on what this report's own tool calls returned.

A finding is kept only if every step it cites is a data tool step of this
report that did not fail, every trace id it cites is among the traces those
steps' results hold (the tools are scoped to the project by the portal, so a
trace of another project, or one that does not exist, is never there), and
its count is no more than one cited step's data show for the cited traces:
a search's `matched` when the cited traces are among its rows, else the
`traces` of the rows that hold the cited traces (for scores, the failing
ones), or the cited traces themselves; never a number of rows or steps the
cited traces are not in. Its share is count / that same step's window total
(`window_total`), its cost estimated from the cited traces' costs.
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


def holds(row: Mapping[str, Any], trace_id: str) -> bool:
    """Whether a row holds this trace: it is the trace (`id`) or one of the row's examples."""
    examples = row.get("example_trace_ids")
    return row.get("id") == trace_id or (isinstance(examples, list) and trace_id in examples)


def row_count(row: Mapping[str, Any]) -> int:
    """How many traces a grouped row says show what its traces show. A row of scores (it has a
    `pass_rate`) says how many fail, not how many were scored: its `failing`, else its scores times
    the failing rate (at most its traces), else (the evaluator defines no passing) nothing."""
    traces = number(row.get("traces"))
    if "pass_rate" in row or "failing" in row:
        failing = number(row.get("failing"))
        if failing is None:
            rate, scores = number(row.get("pass_rate")), number(row.get("scores")) or traces
            failing = round(scores * (1 - rate)) if rate is not None and scores is not None else 0
        return int(min(failing, traces) if traces is not None else failing)
    return int(traces or 0)


def step_support(step: StepView, trace_ids: list[str]) -> int:
    """How many traces this step's own data show for the cited traces it holds: a search's `matched`
    when every one of them is among its rows; else the rows that hold them (summed where the rows
    are disjoint groups, the portal's usage; the largest one otherwise). A step that holds none of
    the cited traces supports nothing."""
    mine = [t for t in trace_ids if t in step.trace_ids]
    data = step.data if isinstance(step.data, dict) else {}
    if not mine:
        return 0
    table = list(rows(data))
    matched = number(data.get("matched"))
    if matched is not None and all(any(r.get("id") == t for r in table) for t in mine):
        return int(matched)
    holding = [row_count(r) for r in table if "traces" in r and any(holds(r, t) for t in mine)]
    if not holding:
        return 0
    return sum(holding) if step.tool_name == "portal_usage" else max(holding)


def supported_count(steps: Iterable[StepView], trace_ids: list[str]) -> tuple[int, StepView | None]:
    """The most traces one cited step shows for the cited traces (at least the cited traces
    themselves), and that step (None when only the cited traces support the count)."""
    best, best_step = len(set(trace_ids)), None
    for step in steps:
        support = step_support(step, trace_ids)
        if support > best:
            best, best_step = support, step
    return best, best_step


def window_total(steps: Iterable[StepView], trace_ids: list[str], count: int,
                 supporting: StepView | None) -> int | None:
    """The window's traces by the step that supports the count (so count and total are of one
    tool's units); when the cited traces alone support it, the first cited step that holds them
    and says its window's total."""
    candidates = [supporting] if supporting is not None else \
        [s for s in steps if any(t in s.trace_ids for t in trace_ids)]
    for step in candidates:
        total = number(step.data.get("window_total")) if isinstance(step.data, dict) else None
        if total:
            return int(total)
    return None


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
    supported, supporting = supported_count(steps, trace_ids)
    if count > supported:
        raise Refused(f"count {count} is more than the cited steps show ({supported})",
                      {"count": count, "supported": supported})
    total = window_total(steps, trace_ids, count, supporting)
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
