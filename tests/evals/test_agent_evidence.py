"""The evidence check of the agent's findings and answers (no database, no stack)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from evals.agent.evidence import Invalid, Refused, StepView, check_citations, check_finding

SEARCH = StepView(index=3, kind="tool", tool_name="search_traces", trace_ids=("t1", "t2", "t3"),
                  data={"matched": 40, "window_total": 200, "rows": [
                      {"id": "t1", "cost": 0.002}, {"id": "t2", "cost": 0.004}, {"id": "t3", "cost": None}]})
# score_stats by route: 16 traces of route chat scored, a quarter passed, so 12 fail.
STATS = StepView(index=5, kind="tool", tool_name="score_stats", trace_ids=("t9",),
                 data={"rows": [{"evaluator": "language", "route": "chat", "traces": 16, "scores": 16,
                                 "pass_rate": 0.25, "example_trace_ids": ["t9"]}]})
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


def test_a_score_rows_failing_traces_support_a_finding_not_its_scored_traces() -> None:
    checked = check_finding(finding(count=12, trace_ids=["t9"], steps=[5]), STEPS)
    assert checked.count == 12 and checked.share is None and checked.cost is None
    with pytest.raises(Refused, match=r"\(12\)"):  # 16 were scored, but only 12 fail
        check_finding(finding(count=16, trace_ids=["t9"], steps=[5]), STEPS)
    exact = StepView(index=5, kind="tool", tool_name="score_stats", trace_ids=("t9",), data={"rows": [
        STATS.data["rows"][0] | {"failing": 11}]})
    with pytest.raises(Refused, match=r"\(11\)"):  # the tool's own failing count, when it gives one
        check_finding(finding(count=12, trace_ids=["t9"], steps=[5]), {5: exact})
    unjudged = StepView(index=5, kind="tool", tool_name="score_stats", trace_ids=("t9",), data={"rows": [
        STATS.data["rows"][0] | {"pass_rate": None}]})
    with pytest.raises(Refused, match=r"\(1\)"):  # no passing defined: only the cited trace itself
        check_finding(finding(count=2, trace_ids=["t9"], steps=[5]), {5: unjudged})


# portal_usage by route: route chat 300 requests, chat-fr 4, chat-de 3 (disjoint groups).
USAGE = StepView(index=9, kind="tool", tool_name="portal_usage", trace_ids=("a1", "f1", "d1"), data={
    "group_by": "route", "window_total": 307, "rows": [
        {"route": "chat", "traces": 300, "cost": 1.0, "example_trace_ids": ["a1"]},
        {"route": "chat-fr", "traces": 4, "cost": 0.1, "example_trace_ids": ["f1"]},
        {"route": "chat-de", "traces": 3, "cost": 0.1, "example_trace_ids": ["d1"]}]})


def test_a_usage_count_is_the_rows_that_hold_the_cited_traces() -> None:
    steps = {9: USAGE, 3: SEARCH}
    assert check_finding(finding(count=4, trace_ids=["f1"], steps=[9]), steps).share == pytest.approx(4 / 307)
    assert check_finding(finding(count=7, trace_ids=["f1", "d1"], steps=[9]), steps).count == 7  # two routes
    for count, cited, at in ((5, ["f1"], [9]), (8, ["f1", "d1"], [9]), (41, ["f1", "t1"], [9, 3])):
        with pytest.raises(Refused):  # the busy route's 300 (or the search's 40) are not these traces' rows
            check_finding(finding(count=count, trace_ids=cited, steps=at), steps)


def test_the_share_is_taken_from_the_step_that_supports_the_count() -> None:
    # The search (window_total 200 traces) supports 40; the usage table (307 requests) only f1's 4.
    checked = check_finding(finding(count=40, trace_ids=["t1", "f1"], steps=[9, 3]), {9: USAGE, 3: SEARCH})
    assert checked.share == pytest.approx(40 / 200)
    checked = check_finding(finding(count=4, trace_ids=["f1"], steps=[3, 9]), {9: USAGE, 3: SEARCH})
    assert checked.share == pytest.approx(4 / 307)


def test_a_search_supports_its_matched_count_only_for_its_own_rows() -> None:
    # t3 is among the rows, so matched (40) stands; a trace that is only another step's does not lift it.
    assert check_finding(finding(count=40, trace_ids=["t3"]), STEPS).count == 40
    lone = StepView(index=6, kind="tool", tool_name="read_trace", trace_ids=("t1",), data={"trace": {"id": "t1"}})
    with pytest.raises(Refused, match=r"\(1\)"):
        check_finding(finding(count=2, trace_ids=["t1"], steps=[6]), {6: lone})


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
