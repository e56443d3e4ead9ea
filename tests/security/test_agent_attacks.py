"""The evaluation agent attacked by a hostile tenant (review R1).

The model's output is attacker-controlled (a trace's text is a prompt injection), so the loop is
driven by a scripted model in the gateway's place that sends what an injected model would, against
the real data tools, the real evidence check and PostgreSQL; the API and the pages are attacked as
another organization's, another team's or a too-low role's user. Each test asserts what holds."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from evals.agent import loop
from evals.agent.models import AgentFinding, AgentReport, AgentStep
from evals.gateway_client import Completion, ToolCall
from gateway.models import UsageRecord
from portal.models import Project
from tests.factories import Tenant

pytestmark = pytest.mark.django_db
NOW = timezone.now()

Turn = Any  # a (content, [(tool name, arguments)]) pair, or a function of the messages returning one


class Model:
    """The gateway's place: each turn is what a (prompt-injected) model answers; past the script, plain text."""

    def __init__(self, *turns: Turn, cost: float = 0.001, tokens: tuple[int, int] = (100, 20)) -> None:
        self.turns, self.cost, self.tokens = list(turns), cost, tokens
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, api_key: str, timeout: float) -> Model:
        assert api_key == "sk-service-r1"
        return self

    def chat(self, model: str, messages: list[dict[str, Any]], *, purpose: str, **params: Any) -> Completion:
        self.requests.append(copy.deepcopy(messages))
        n = len(self.requests) - 1
        turn = self.turns[n] if n < len(self.turns) else ("That is all.", [])
        content, asked = turn(messages) if callable(turn) else turn
        tool_calls = [ToolCall(f"call_{n}_{i}", name, args if isinstance(args, str) else json.dumps(args))
                      for i, (name, args) in enumerate(asked)]
        return Completion(content, tool_calls[0].arguments if tool_calls else None, self.cost, 2.0, "b" * 32,
                          self.tokens[0], self.tokens[1], tool_calls, "tool_calls" if tool_calls else "stop")


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Any:
    """use(*turns) puts a scripted model in the gateway's place (the real data tools answer)."""
    monkeypatch.setattr(loop, "service_key", lambda project: "sk-service-r1")

    def use(*turns: Turn, **kwargs: Any) -> Model:
        scripted = Model(*turns, **kwargs)
        monkeypatch.setattr(loop, "gateway", scripted)
        return scripted
    return use


def make_report(t: Tenant, project: Project | None = None, **fields: Any) -> AgentReport:
    return AgentReport.objects.create(project=project or t.project, route=t.route,
                                      window_start=NOW - dt.timedelta(days=2), window_end=NOW + dt.timedelta(hours=1),
                                      **fields)


def usage(t: Tenant, trace_id: str, *, project: Project | None = None, key: Any = None, cost: str = "0.002",
          status: str = "success") -> UsageRecord:
    project = project or t.project
    return UsageRecord.objects.create(
        request_id=f"req-{uuid.uuid4().hex}", created_at=NOW - dt.timedelta(hours=1), organization=t.org,
        team=project.team, project=project, key=key or t.key, route="chat", model_group="chat", prompt_tokens=10,
        completion_tokens=20, cost=Decimal(cost), latency_ms=300, status=status,
        status_code=200 if status == "success" else 500, error_class="" if status == "success" else "RateLimit",
        trace_id=trace_id)


def tool_steps(report: AgentReport) -> list[AgentStep]:
    return list(AgentStep.objects.filter(report=report, kind="tool").order_by("index"))


def last_result(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return json.loads([m for m in messages if m["role"] == "tool"][-1]["content"])


def finding(step: int, trace_ids: list[str], count: int, **extra: Any) -> dict[str, Any]:
    return {"title": "Rate limits", "problem": "Requests fail.", "count": count, "change_kind": "route",
            "change": "Add a fallback.", "trace_ids": trace_ids, "steps": [step]} | extra


FINISH = ("", [("finish_report", {"summary": "done"})])


# The tools as a hostile model -------------------------------------------------------------------

def test_arguments_that_reach_for_another_project_or_past_the_bounds_are_tool_errors(
        acme: Tenant, globex: Tenant, model: Any) -> None:
    """An injected model names another project or organization, asks for huge limits, times outside the
    window, sends malformed or enormous arguments and tools that do not exist: each is an error result the
    model sees, nothing of globex is read, and what is stored of the call is bounded."""
    mine, theirs = usage(acme, "acme-trace-1"), usage(globex, "globex-trace-1", cost="7.77")
    attempts = [
        ("portal_usage", {"project": globex.project.pk}), ("portal_usage", {"project_id": globex.project.pk}),
        ("portal_usage", {"organization": "globex"}), ("score_stats", {"project": globex.project.pk}),
        ("portal_usage", {"limit": 100_000}), ("portal_usage", {"limit": 20.0}), ("portal_usage", {"limit": True}),
        ("portal_usage", {"route": "x" * 5000}),
        ("portal_usage", {"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z"}),
        ("compare", {"measure": "volume", "a": {"project": globex.project.pk}, "b": {}}),
        ("langfuse_metrics", {"view": "traces", "metrics": [{"measure": "count", "aggregation": "count"}]}),
        ("portal_usage", '{"limit": 5'), ("portal_usage", "[1, 2]"), ("portal_usage", '"text"'),
        ("portal_usage", json.dumps({"route": "y" * 1_000_000})),  # an enormous argument string
        ("x" * 10_000, "{}"), ("read_project", {"project": 7}), ("", "{}"),
    ]
    model(("", attempts), ("", [("portal_usage", {"group_by": "route"})]), FINISH)
    r = make_report(acme)
    done = loop.investigate(r.pk)
    assert done is not None and done.status == "succeeded", (done.status, done.error)
    steps = tool_steps(r)
    assert len(steps) == len(attempts) + 2
    for step, (name, _) in zip(steps, attempts, strict=False):
        assert step.error, (name[:40], step.arguments)
        assert not step.trace_ids and len(step.tool_name) <= 100
        assert len(json.dumps(step.arguments)) <= 8100 and len(step.result_digest) <= 9000
    errors = [s.error for s in steps[:len(attempts)]]
    assert "project is fixed by the portal" in errors[0] and "unknown argument 'organization'" in errors[2]
    assert "outside the report's window" in errors[8] and "unknown tool" in errors[15]
    ok = steps[len(attempts)]
    assert not ok.error and ok.trace_ids == [mine.trace_id]
    everything = json.dumps([[s.result, s.result_digest, s.trace_ids] for s in steps])
    assert theirs.trace_id not in everything and "7.77" not in everything and "globex" not in everything


def test_evidence_from_another_report_a_failed_call_a_control_step_or_an_inflated_count_is_dropped(
        acme: Tenant, globex: Tenant, model: Any) -> None:
    """Findings that cite the steps and traces of another report (of the same project, or of another
    organization), a failed tool call, a model or control step, or more traces than the tool's data show are
    dropped and counted; a finding whose evidence holds is kept, with the tool's own numbers."""
    for i in range(3):
        usage(acme, f"acme-t{i}", status="error")
    usage(globex, "globex-t0", status="error")
    by_error = ("portal_usage", {"group_by": "error_class"})
    other = make_report(acme)
    model(("", [by_error, by_error, by_error]), FINISH)
    loop.investigate(other.pk)
    earlier = [s for s in tool_steps(other) if s.tool_name == "portal_usage"][-1]  # 4: a model step below
    assert earlier.index == 4 and earlier.trace_ids and not earlier.error
    foreign = make_report(globex)
    model(("", [by_error]), FINISH)
    loop.investigate(foreign.pk)
    theirs = tool_steps(foreign)[0]
    assert theirs.trace_ids == ["globex-t0"]

    def findings(messages: list[dict[str, Any]]) -> Any:
        results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
        good, failed = results[-2], results[-1]
        assert (good["step"], failed["step"]) == (2, 3) and "error" in failed
        row = good["data"]["rows"][0]
        ids, supported = row["example_trace_ids"], row["traces"]
        return "", [
            ("record_finding", finding(earlier.index, earlier.trace_ids, 1, title="Another report's step")),
            ("record_finding", finding(5, ids, 1, title="A control step")),  # step 5: the call just above
            ("record_finding", finding(theirs.index, ["globex-t0"], 1, title="Another organization's trace")),
            ("record_finding", finding(3, ids, 1, title="A failed call")),
            ("record_finding", finding(2, ids, supported + 1, title="Inflated")),
            ("record_finding", finding(2, ids, supported, title="Holds")),
        ]
    r = make_report(acme)
    model(("", [by_error, ("portal_usage", {"limit": 0})]), findings, FINISH)
    done = loop.investigate(r.pk)
    assert done is not None and done.status == "succeeded", done.error
    kept = list(AgentFinding.objects.filter(report=r))
    assert [(f.title, f.count, f.steps) for f in kept] == [("Holds", 3, [2])]
    assert set(kept[0].trace_ids) <= {"acme-t0", "acme-t1", "acme-t2"}
    reasons = {d["title"]: d["reason"] for d in done.dropped}
    assert done.findings_dropped == 5, reasons
    assert "step 4 is not a tool step of this report" in reasons["Another report's step"]
    assert "record_finding call" in reasons["A control step"]
    assert "globex-t0 are not in the results" in reasons["Another organization's trace"]
    assert "step 3 failed" in reasons["A failed call"] and "count 4 is more than" in reasons["Inflated"]
    assert not AgentFinding.objects.filter(report__in=[other, foreign]).exists()
