"""The evidence check of the agent's findings and answers (no database, no stack)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from evals.agent.evidence import Invalid, Refused, StepView, check_citations, check_finding

SEARCH = StepView(index=3, kind="tool", tool_name="search_traces", trace_ids=("t1", "t2", "t3"),
                  data={"matched": 40, "window_total": 200, "rows": [
                      {"id": "t1", "cost": 0.002}, {"id": "t2", "cost": 0.004}, {"id": "t3", "cost": None}]})
STATS = StepView(index=5, kind="tool", tool_name="score_stats", trace_ids=("t9",),
                 data={"rows": [{"route": "chat", "traces": 12, "example_trace_ids": ["t9"]}]})
FAILED = StepView(index=7, kind="tool", tool_name="read_trace", error="trace not found", trace_ids=())
CONTROL = StepView(index=8, kind="tool", tool_name="record_finding", data={"kept": True, "matched": 999})
MODEL = StepView(index=2, kind="model")
STEPS = {s.index: s for s in (SEARCH, STATS, FAILED, CONTROL, MODEL)}


def finding(**overrides: Any) -> dict[str, Any]:
    return {"title": "Wrong language on route chat", "problem": "Answers in English to German questions.",
            "count": 40, "change_kind": "prompt", "change": "Answer in the user's language.",
            "trace_ids": ["t1", "t2"], "steps": [3]} | overrides


def test_a_finding_whose_evidence_holds_is_kept_with_share_and_cost() -> None:
    checked = check_finding(finding(), STEPS)
    assert (checked.count, checked.share, checked.key) == (40, 0.2, "wrong-language-on-route-chat")
    assert checked.cost == Decimal("0.120000000")  # mean of t1, t2 ($0.003) x 40 traces
    assert checked.trace_ids == ["t1", "t2"] and checked.steps == [3]


def test_a_rows_traces_count_supports_a_finding() -> None:
    checked = check_finding(finding(count=12, trace_ids=["t9"], steps=[5]), STEPS)
    assert checked.count == 12 and checked.share is None and checked.cost is None


@pytest.mark.parametrize("overrides,reason", [
    ({"trace_ids": ["t1", "other-project-trace"]}, "other-project-trace are not in the results"),
    ({"trace_ids": ["t9"]}, "t9 are not in the results of the cited steps"),  # t9 is in step 5, not cited
    ({"count": 41}, "count 41 is more than the cited steps show (40)"),
    ({"steps": [4]}, "step 4 is not a tool step"),
    ({"steps": [2]}, "step 2 is not a tool step"),
    ({"steps": [7]}, "step 7 failed"),
    ({"steps": [8]}, "is a record_finding call"),
    ({"steps": [3, 7]}, "step 7 failed"),
])
def test_a_finding_whose_evidence_does_not_hold_is_refused(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(Refused) as refused:
        check_finding(finding(**overrides), STEPS)
    assert reason in refused.value.reason


def test_citing_two_steps_takes_the_union_of_their_traces_and_the_larger_count() -> None:
    checked = check_finding(finding(trace_ids=["t1", "t9"], steps=[3, 5], count=40), STEPS)
    assert checked.trace_ids == ["t1", "t9"]


@pytest.mark.parametrize("overrides,message", [
    ({"title": ""}, "'title'"), ({"count": 0}, "'count'"), ({"count": "12"}, "'count'"),
    ({"count": True}, "'count'"), ({"change_kind": "vibes"}, "'change_kind'"), ({"trace_ids": []}, "'trace_ids'"),
    ({"trace_ids": "t1"}, "'trace_ids'"), ({"steps": ["3"]}, "'steps'"), ({"steps": [True]}, "'steps'"),
    ({"trace_ids": [f"t{i}" for i in range(51)]}, "at most 50"),
])
def test_arguments_that_are_not_a_finding_are_invalid(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as invalid:
        check_finding(finding(**overrides), STEPS)
    assert message in str(invalid.value)


def test_an_answers_citations_are_checked_one_by_one() -> None:
    kept, refused = check_citations([
        {"trace_id": "t1", "steps": [3]}, {"trace_id": "t9", "steps": [5]},
        {"trace_id": "elsewhere", "steps": [3]}, {"trace_id": "t1", "steps": [7]}, {"trace_id": "t1"},
        "t2", {"trace_id": "t2", "steps": [99]}], STEPS)
    assert kept == [{"trace_id": "t1", "steps": [3]}, {"trace_id": "t9", "steps": [5]}]
    assert len(refused) == 5
    assert check_citations(None, STEPS) == ([], [])
    assert check_citations("t1", STEPS) == ([], ["'evidence' is not a list"])
