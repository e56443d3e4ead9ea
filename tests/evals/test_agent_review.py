"""Reviewer R2's tests of the evaluation agent (issue 12): behaviour a user would notice that the
helpers' tests do not pin. A strict xfail marks a defect reported in /work/notes/findings-R2.md: it
passes while the defect is there and fails (XPASS) once it is repaired, so the mark must come off."""

from __future__ import annotations

from typing import Any

import pytest

from evals.agent.evidence import Refused, StepView, check_finding
from evals.agent.tools import traces as trace_tools
from tests.evals.test_agent_tools_world import World, ok, world_fixture  # noqa: F401 (world_fixture)
from tests.factories import Tenant

# portal_usage grouped by route: the busy route has 300 requests, the French route 4.
USAGE_BY_ROUTE = StepView(index=4, kind="tool", tool_name="portal_usage", trace_ids=("a1", "f1", "f2"), data={
    "group_by": "route", "window_total": 304, "rows": [
        {"route": "chat", "requests": 300, "traces": 300, "example_trace_ids": ["a1"]},
        {"route": "chat-fr", "requests": 4, "traces": 4, "example_trace_ids": ["f1", "f2"]}]})
SEARCH_FR = StepView(index=3, kind="tool", tool_name="search_traces", trace_ids=("f1", "f2", "f3", "f4"),
                     data={"matched": 4, "window_total": 304, "rows": [{"id": f"f{i}"} for i in range(1, 5)]})


def french(**overrides: Any) -> dict[str, Any]:
    return {"title": "French answers on chat-fr", "problem": "Answers in French to English questions.",
            "count": 4, "change_kind": "prompt", "change": "Answer in the user's language.",
            "trace_ids": ["f1", "f2"], "steps": [4]} | overrides


def test_a_findings_count_within_the_row_of_its_traces_is_kept() -> None:
    checked = check_finding(french(), {4: USAGE_BY_ROUTE})
    assert (checked.count, checked.share) == (4, pytest.approx(4 / 304))


def test_a_count_borrowed_from_another_routes_row_is_refused() -> None:
    # The French route's finding claims the busy route's 300 requests: 'by the tool's own data' it is 4.
    with pytest.raises(Refused):
        check_finding(french(count=300), {4: USAGE_BY_ROUTE})


def test_a_count_borrowed_from_a_second_cited_step_is_refused() -> None:
    # The search says 4 traces show it; citing the usage table as well must not make it 300.
    with pytest.raises(Refused):
        check_finding(french(count=300, steps=[3, 4]), {3: SEARCH_FR, 4: USAGE_BY_ROUTE})


@pytest.mark.django_db
def test_a_search_by_tag_finds_the_tagged_traces_beyond_the_scan(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A week of a busy project holds more than MAX_SCAN traces; here the bound is 8 and the 4 French traces
    # (tag fr) come after the first 8 of the window. Langfuse filters by tag itself (GET /api/public/traces?tags=).
    monkeypatch.setattr(trace_tools, "MAX_SCAN", 8)
    found = ok(world.ctx(), "search_traces", {"tags": ["fr"]})
    assert found.data["matched"] == 4


@pytest.mark.django_db
def test_a_member_of_another_team_reads_no_more_usage_through_a_report_than_through_usage(acme: Tenant) -> None:
    import datetime as dt

    from django.utils import timezone

    from evals.agent.models import AgentReport, AgentStep
    from evals.agent.tools import ToolContext, call
    from portal import services
    from portal.access import actor_for_user, system_actor
    from portal.models import OrgRole, TeamRole, TokenScope
    from tests.evals.test_agent_tools_world import usage
    from tests.factories import api

    now = timezone.now()
    usage(acme, "trace-1", now - dt.timedelta(hours=1), cost="3.5")  # acme's member key, acme's project team
    system = system_actor(acme.org, "tests")
    outsider = services.member_add(actor=system, email="outsider@acme.test", role=OrgRole.MEMBER).user
    other = services.team_create(actor=system, data={"name": "acme-other"})
    services.team_member_add(actor=system, team=other, email="outsider@acme.test", role=TeamRole.MEMBER)
    actor = actor_for_user(acme.org, outsider)
    _, token = services.api_token_create(actor=actor, name="outsider", role=actor.role, scope=TokenScope.FULL)
    client = api(token)
    # The usage API keeps the other team's keys from this member (the rule of keys and their usage).
    by_key = client.get(acme.url("usage/"), {"group_by": "key"}).json()
    assert "acme member key" not in str(by_key)
    # The agent read the same usage for a report of the project (the team's admin started it).
    report = AgentReport.objects.create(project=acme.project, route=acme.route, status="succeeded",
                                        window_start=now - dt.timedelta(days=1), window_end=now)
    result = call(ToolContext(project=acme.project, window_start=report.window_start, window_end=now, langfuse=None),
                  "portal_usage", {"group_by": "key"})
    assert "acme member key" in result.text
    AgentStep.objects.create(report=report, index=1, kind="tool", tool_name="portal_usage", result=result.data,
                             result_digest=result.text, arguments={"group_by": "key"})
    steps = client.get(acme.url(f"projects/{acme.project.pk}/reports/{report.pk}/steps/"))
    assert steps.status_code == 404 or "acme member key" not in steps.content.decode()
