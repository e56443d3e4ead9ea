"""The evaluation agent's reports through the API: starting one (and its field
errors), the report as it is read (summary, findings with evidence linked to
Langfuse, step digests, the conversation), its steps with results, follow-up
questions, and tenancy: another organization's, project's or team's report,
steps, messages and findings are 404 and never listed; a too-low role is 403.

The loop itself is not the subject here (tests/e2e drive it): reports, steps,
findings and messages are written as rows where a finished report is needed,
and the tasks that would run them are enqueued on commit, which a test
transaction never reaches."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from evals.agent.models import AgentFinding, AgentMessage, AgentReport, AgentStep
from evals.models import LangfuseConnection
from gateway.models import ModelRoute
from gateway.services import routes
from portal import services
from portal.access import system_actor
from portal.models import Project, TeamRole
from tests.factories import ROLES, Tenant, connect_langfuse
from tests.langfuse_standin import LangfuseStandin

pytestmark = pytest.mark.django_db
WRITERS = ("owner", "admin", "team_admin")  # org admins and the project team's admins
NOW = timezone.now()


def make_report(t: Tenant, project: Project | None = None, *, status: str = "succeeded", schedule: Any = None,
                trace_ids: tuple[str, ...] = ("tr-1", "tr-2"), findings: int = 1, share: float | None = 0.2,
                key: str = "wrong-language", created_at: dt.datetime | None = None) -> AgentReport:
    """A finished report as the loop leaves it: a model step, a tool step with a result, findings citing
    the tool step's traces, and one question answered."""
    project = project or t.project
    slug = t.org.slug
    report = AgentReport.objects.create(project=project, route=t.route, status=status, schedule=schedule,
                                        window_start=NOW - dt.timedelta(days=7), window_end=NOW,
                                        summary=f"{slug}: answers in the wrong language", steps_taken=2,
                                        tokens_used=1234, cost=Decimal("0.0021"), findings_dropped=1,
                                        dropped=[{"title": f"{slug} unfounded", "reason": "trace not in the steps"}],
                                        finished_at=NOW)
    if created_at is not None:
        AgentReport.objects.filter(pk=report.pk).update(created_at=created_at)
        report.refresh_from_db()
    AgentStep.objects.create(report=report, index=0, kind="model", content=f"{slug} looks at traces",
                             tool_call_id="call-1", prompt_tokens=1000, completion_tokens=100)
    AgentStep.objects.create(report=report, index=1, kind="tool", tool_call_id="call-1", tool_name="search_traces",
                             arguments={"tags": ["fr"]}, result_digest=f"{slug}: 2 of 10 traces",
                             result={"matched": 2, "window_total": 10,
                                     "rows": [{"id": i, "cost": 0.001, "name": f"{slug} chat"} for i in trace_ids]},
                             trace_ids=list(trace_ids))
    for index in range(findings):
        AgentFinding.objects.create(report=report, index=index, key=key if index == 0 else f"{key}-{index}",
                                    title=f"{slug} finding {index}", problem="French questions get English answers",
                                    count=2, share=share, cost=Decimal("0.002"), change_kind="prompt",
                                    change="Answer in the user's language", trace_ids=list(trace_ids), steps=[1])
    AgentMessage.objects.create(report=report, role="user", content=f"{slug}: which route?")
    AgentMessage.objects.create(report=report, role="assistant", content=f"{slug}: route chat",
                                evidence=[{"trace_id": trace_ids[0], "steps": [1]}])
    return report


def reports_url(t: Tenant, path: str = "", project: Project | None = None) -> str:
    return t.url(f"projects/{(project or t.project).pk}/reports/{path}")


def other_team_project(t: Tenant) -> Project:
    """A project of another team of the same organization (acme's team admin is not its admin)."""
    system = system_actor(t.org, "tests")
    team = services.team_create(actor=system, data={"name": f"{t.org.slug}-research"})
    services.team_member_add(actor=system, team=team, email=f"owner@{t.org.slug}.test", role=TeamRole.ADMIN)
    return services.project_create(actor=system, data={"name": f"{t.org.slug}-lab", "team": team})


# reading ------------------------------------------------------------------

def test_list_and_detail_show_the_report_its_evidence_and_the_conversation(acme: Tenant,
                                                                          langfuse_standin: LangfuseStandin) -> None:
    connect_langfuse(acme, langfuse_standin)
    conn = LangfuseConnection.objects.get(project=acme.project)
    report = make_report(acme)
    for role in ROLES:  # everyone in the organization reads
        listed = acme.client(role).get(reports_url(acme))
        assert listed.status_code == 200, (role, listed.content)
        assert [r["id"] for r in listed.json()["results"]] == [report.pk]
    row = listed.json()["results"][0]
    assert row["route"] == "chat" and row["findings"] == 1 and row["status"] == "succeeded"
    assert "steps" not in row and "messages" not in row  # the list is a summary

    detail = acme.client("viewer").get(reports_url(acme, f"{report.pk}/")).json()
    assert detail["summary"] == "acme: answers in the wrong language" and detail["findings_dropped"] == 1
    assert detail["dropped"] == [{"title": "acme unfounded", "reason": "trace not in the steps"}]
    finding = detail["findings"][0]
    assert finding["count"] == 2 and finding["share"] == 0.2 and finding["steps"] == [1]
    assert finding["traces"] == [{"id": t, "url": f"{conn.host}/project/{conn.langfuse_project_id}/traces/{t}"}
                                 for t in ("tr-1", "tr-2")]
    assert [s["index"] for s in detail["steps"]] == [0, 1]
    assert all("result" not in s for s in detail["steps"])  # digests; steps/ has the results
    assert detail["steps"][1]["result_digest"] == "acme: 2 of 10 traces" and detail["steps"][1]["tool_name"] == \
        "search_traces"
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][1]["evidence"][0]["url"].endswith("/traces/tr-1")


def test_steps_are_paginated_with_their_results(acme: Tenant) -> None:
    report = make_report(acme)
    for i in range(2, 6):
        AgentStep.objects.create(report=report, index=i, kind="tool", tool_name="read_trace", result={"n": i})
    page = acme.client("viewer").get(reports_url(acme, f"{report.pk}/steps/"), {"page_size": 3}).json()
    assert page["count"] == 6 and [s["index"] for s in page["results"]] == [0, 1, 2]
    assert page["results"][1]["result"]["matched"] == 2 and page["next"]
    rest = acme.client("viewer").get(page["next"]).json()
    assert [s["index"] for s in rest["results"]] == [3, 4, 5] and rest["results"][0]["result"] == {"n": 3}


def test_trace_links_are_null_without_langfuse_and_escape_the_trace_id(acme: Tenant,
                                                                       langfuse_standin: LangfuseStandin) -> None:
    report = make_report(acme, trace_ids=("a/../b?x",))
    detail = acme.client("viewer").get(reports_url(acme, f"{report.pk}/")).json()
    assert detail["findings"][0]["traces"] == [{"id": "a/../b?x", "url": None}]
    connect_langfuse(acme, langfuse_standin)
    url = acme.client("viewer").get(reports_url(acme, f"{report.pk}/")).json()["findings"][0]["traces"][0]["url"]
    assert url.endswith("/traces/a%2F..%2Fb%3Fx")


def test_steps_link_their_traces_and_a_message_lists_its_steps(acme: Tenant, langfuse_standin: LangfuseStandin,
                                                                django_assert_max_num_queries: Any) -> None:
    """R2-8: a step's traces and its model call's trace carry their Langfuse pages (as findings' do); an
    answer names its steps, and steps/?message= lists them; the report's filters are no parameters of steps/
    or messages/ (they would be ignored)."""
    connect_langfuse(acme, langfuse_standin)
    conn = LangfuseConnection.objects.get(project=acme.project)
    page = f"{conn.host}/project/{conn.langfuse_project_id}/traces"
    report = make_report(acme)
    AgentStep.objects.filter(report=report, index=0).update(llm_trace_id="llm-1")
    answer = AgentMessage.objects.get(report=report, role="assistant")
    for i in (2, 3):
        AgentStep.objects.create(report=report, message=answer, index=i, kind="tool", tool_name="read_trace",
                                 trace_ids=["tr-1"], result={"id": "tr-1"})
    viewer = acme.client("viewer")
    steps = viewer.get(reports_url(acme, f"{report.pk}/steps/")).json()["results"]
    assert steps[1]["traces"] == [{"id": t, "url": f"{page}/{t}"} for t in ("tr-1", "tr-2")]
    assert (steps[0]["llm_trace_url"], steps[1]["llm_trace_url"]) == (f"{page}/llm-1", None)
    detail = viewer.get(reports_url(acme, f"{report.pk}/")).json()
    assert detail["steps"][1]["traces"][0]["url"] == f"{page}/tr-1" and detail["steps"][0]["llm_trace_url"]
    assert [m["steps"] for m in detail["messages"]] == [[], [2, 3]]
    with django_assert_max_num_queries(12):  # the messages' steps in one query, not one per message
        listed = viewer.get(reports_url(acme, f"{report.pk}/messages/")).json()["results"]
    assert [m["steps"] for m in listed] == [[], [2, 3]]
    only = viewer.get(reports_url(acme, f"{report.pk}/steps/"), {"message": answer.pk}).json()
    assert [s["index"] for s in only["results"]] == [2, 3]
    own = viewer.get(reports_url(acme, f"{report.pk}/steps/"), {"message": 0}).json()
    assert [s["index"] for s in own["results"]] == [0, 1]
    bad = viewer.get(reports_url(acme, f"{report.pk}/steps/"), {"message": "x"})
    assert bad.status_code == 400 and list(bad.json()) == ["message"]

    schema = viewer.get("/api/v1/schema/", {"format": "json"}).json()
    base = "/api/v1/orgs/{org_slug}/projects/{project_id}/reports/{id}/"
    params = {p["name"] for p in schema["paths"][base + "steps/"]["get"].get("parameters", [])}
    assert "message" in params and not params & {"status", "schedule", "ordering"}, params
    params = {p["name"] for p in schema["paths"][base + "messages/"]["get"].get("parameters", [])}
    assert not params & {"status", "schedule", "ordering"}, params


# starting a report ----------------------------------------------------------

def test_only_the_teams_admins_start_a_report_and_it_is_queued(acme: Tenant,
                                                               django_capture_on_commit_callbacks: Any) -> None:
    body = {"route": "chat", "focus": "wrong languages", "window_start": "2026-01-01T00:00:00Z",
            "window_end": "2026-01-08T00:00:00Z", "max_steps": 12, "max_tokens": 50_000, "max_seconds": 120,
            "max_spend": "0.50"}
    for role in ("member", "viewer"):
        denied = acme.client(role).post(reports_url(acme), body, format="json")
        assert denied.status_code == 403, (role, denied.content)
    with django_capture_on_commit_callbacks() as queued:
        response = acme.client("team_admin").post(reports_url(acme), body, format="json")
    assert response.status_code == 202, response.content
    report = AgentReport.objects.get(pk=response.json()["id"])
    assert (report.status, report.route_id, report.focus, report.max_steps, report.max_tokens, report.max_seconds,
            report.max_spend) == ("queued", acme.route.pk, "wrong languages", 12, 50_000, 120, Decimal("0.5"))
    assert report.window_start.isoformat() == "2026-01-01T00:00:00+00:00"
    assert len(queued) == 1  # the investigation goes to a worker once committed
    assert response.json()["status"] == "queued" and response.json()["route"] == "chat"


@pytest.mark.parametrize("body,field", [
    ({}, "route"),
    ({"route": "no-such-route"}, "route"),
    ({"route": "Robert'); DROP TABLE--"}, "route"),
    ({"route": "chat", "max_steps": 0}, "max_steps"),
    ({"route": "chat", "max_steps": 101}, "max_steps"),
    ({"route": "chat", "max_tokens": 999}, "max_tokens"),
    ({"route": "chat", "max_seconds": 3001}, "max_seconds"),
    ({"route": "chat", "max_spend": "0"}, "max_spend"),
    ({"route": "chat", "max_spend": "1e9"}, "max_spend"),
    ({"route": "chat", "focus": "x" * 2001}, "focus"),
    ({"route": "chat", "window_start": "2026-01-08T00:00:00Z", "window_end": "2026-01-01T00:00:00Z"}, "window_end"),
    ({"route": "chat", "window_start": "yesterday"}, "window_start"),
])
def test_bad_requests_are_400_with_the_field_and_create_nothing(acme: Tenant, body: dict[str, Any],
                                                                field: str) -> None:
    response = acme.client("team_admin").post(reports_url(acme), body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not AgentReport.objects.exists()


def test_a_route_of_another_team_or_another_organization_is_refused(acme: Tenant, globex: Tenant) -> None:
    system = system_actor(acme.org, "tests")
    lab = other_team_project(acme)
    routes.route_create(actor=system, data={"name": "lab-only", "allowed_teams": [lab.team], "deployments": [
        {"credential": None, "model": "m", "litellm_params": {"mock_response": "hi"}}]})
    routes.route_create(actor=system_actor(globex.org, "tests"), data={"name": "globex-only", "deployments": [
        {"credential": None, "model": "m", "litellm_params": {"mock_response": "hi"}}]})
    owner = acme.client("owner")
    other_team = owner.post(reports_url(acme), {"route": "lab-only"}, format="json")
    assert other_team.status_code == 400 and list(other_team.json()) == ["route"], other_team.content
    other_org = owner.post(reports_url(acme), {"route": "globex-only"}, format="json")
    assert other_org.status_code == 400 and list(other_org.json()) == ["route"], other_org.content
    assert "globex" not in other_org.content.decode().replace("globex-only", "")
    ModelRoute.objects.filter(pk=acme.route.pk).update(is_active=False)
    inactive = owner.post(reports_url(acme), {"route": "chat"}, format="json")
    assert inactive.status_code == 400 and list(inactive.json()) == ["route"], inactive.content
    assert not AgentReport.objects.exists()
    allowed = owner.post(reports_url(acme, project=lab), {"route": "lab-only"}, format="json")
    assert allowed.status_code == 202, allowed.content  # the lab's own route, in the lab's project


# follow-up questions ------------------------------------------------------

def test_a_question_is_queued_and_the_conversation_lists_it(acme: Tenant,
                                                            django_capture_on_commit_callbacks: Any) -> None:
    report = make_report(acme)
    url = reports_url(acme, f"{report.pk}/messages/")
    for role in ("member", "viewer"):
        assert acme.client(role).post(url, {"content": "why?"}, format="json").status_code == 403
    empty = acme.client("team_admin").post(url, {"content": ""}, format="json")
    assert empty.status_code == 400 and list(empty.json()) == ["content"]
    with django_capture_on_commit_callbacks() as queued:
        response = acme.client("team_admin").post(url, {"content": "Which routes are affected?"}, format="json")
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["role"] == "assistant" and answer["status"] == "queued" and len(queued) == 1
    listed = acme.client("viewer").get(url).json()
    assert [(m["role"], m["content"]) for m in listed["results"]][-2:] == [
        ("user", "Which routes are affected?"), ("assistant", "")]
    assert listed["count"] == 4
    busy = acme.client("team_admin").post(url, {"content": "and then?"}, format="json")
    assert busy.status_code == 400, busy.content  # one answer at a time


def test_no_question_while_the_report_runs(acme: Tenant) -> None:
    report = make_report(acme, status="running")
    response = acme.client("owner").post(reports_url(acme, f"{report.pk}/messages/"), {"content": "so?"},
                                         format="json")
    assert response.status_code == 400, response.content
    assert AgentMessage.objects.filter(report=report).count() == 2


# tenancy --------------------------------------------------------------------

def report_paths(report: AgentReport) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [("get", f"{report.pk}/", None), ("get", f"{report.pk}/steps/", None),
            ("get", f"{report.pk}/messages/", None), ("post", f"{report.pk}/messages/", {"content": "leak?"}),
            ("post", f"{report.pk}/findings/0/dataset/", {})]


def refused(role: str, method: str, url: str, mine: Tenant) -> int:
    """404, but a viewer's write in its own organization is refused for its role before any row is read (403,
    whatever the id: that tells nothing about the row)."""
    return 403 if role == "viewer" and method != "get" and url.startswith(mine.url()) else 404


def test_another_organizations_reports_are_404_and_never_listed(acme: Tenant, globex: Tenant) -> None:
    mine, theirs = make_report(acme), make_report(globex)
    for role in ROLES:
        listed = acme.client(role).get(reports_url(acme)).json()
        assert [r["id"] for r in listed["results"]] == [mine.pk]
        for method, path, body in report_paths(theirs):
            # under one's own project, and under theirs (their organization in the URL)
            for url in (reports_url(acme, path), reports_url(globex, path)):
                response = getattr(acme.client(role), method)(url, body, format="json")
                assert response.status_code == refused(role, method, url, acme), (role, url, response.status_code)
                assert "globex" not in response.content.decode()
    outsider = globex.client("owner")
    for method, path, body in report_paths(mine):
        assert getattr(outsider, method)(reports_url(acme, path), body, format="json").status_code == 404
    assert outsider.get(reports_url(acme)).status_code == 404
    assert AgentMessage.objects.filter(report__in=[mine, theirs]).count() == 4  # nothing asked


def test_another_projects_report_is_404_under_this_project_and_its_team_decides_writes(acme: Tenant) -> None:
    lab = other_team_project(acme)
    mine, labs = make_report(acme), make_report(acme, lab)
    for role in ROLES:
        listed = acme.client(role).get(reports_url(acme)).json()
        assert [r["id"] for r in listed["results"]] == [mine.pk], role
        for method, path, body in report_paths(labs):
            url = reports_url(acme, path)
            response = getattr(acme.client(role), method)(url, body, format="json")
            assert response.status_code == refused(role, method, url, acme), (role, path, response.status_code)
    # the lab's own URL: acme's team admin is a member of the organization outside the lab's team, so it
    # does not see the lab's reports (they hold the team's usage), nor manages its team; an org viewer reads
    # them (viewers see every team) and may not write
    assert acme.client("team_admin").get(reports_url(acme, f"{labs.pk}/", lab)).status_code == 404
    assert acme.client("viewer").get(reports_url(acme, f"{labs.pk}/", lab)).status_code == 200
    ask = acme.client("team_admin").post(reports_url(acme, f"{labs.pk}/messages/", lab), {"content": "x"},
                                         format="json")
    assert ask.status_code == 404, ask.content
    start = acme.client("team_admin").post(reports_url(acme, project=lab), {"route": "chat"}, format="json")
    assert start.status_code == 403, start.content
    dataset = acme.client("team_admin").post(reports_url(acme, f"{labs.pk}/findings/0/dataset/", lab), {},
                                             format="json")
    assert dataset.status_code == 404, dataset.content
    assert AgentMessage.objects.filter(report=labs).count() == 2 and AgentReport.objects.count() == 2


def test_a_member_outside_the_projects_team_reads_none_of_its_reports_or_schedules(acme: Tenant) -> None:
    """R2-11 / R1-5: a report holds the project's usage by key, traces and scores, which the portal shows a
    member of the organization only for their own teams: so its reports, steps, messages, findings and
    schedules are 404 and never listed for a member outside the project's team, as its usage is."""
    from evals.agent.models import AgentSchedule

    lab = other_team_project(acme)
    labs = make_report(acme, lab)
    schedule = AgentSchedule.objects.create(project=lab, name="lab-weekly", route=acme.route)
    member, team_admin, viewer = (acme.client(r) for r in ("member", "team_admin", "viewer"))
    for client in (member, team_admin):  # both are org members of acme's platform team only
        assert client.get(reports_url(acme, project=lab)).json()["results"] == []
        assert client.get(acme.url(f"projects/{lab.pk}/agent-schedules/")).json()["results"] == []
        assert client.get(acme.url(f"projects/{lab.pk}/agent-schedules/{schedule.pk}/")).status_code == 404
        for method, path, body in report_paths(labs):
            response = getattr(client, method)(reports_url(acme, path, lab), body, format="json")
            assert response.status_code == 404, (path, response.status_code)
            assert "acme: 2 of 10" not in response.content.decode()
    # org viewers and up see every team's; the project's own team members see theirs
    assert [r["id"] for r in viewer.get(reports_url(acme, project=lab)).json()["results"]] == [labs.pk]
    assert viewer.get(reports_url(acme, f"{labs.pk}/steps/", lab)).json()["results"][1]["result"]["matched"] == 2
    assert acme.client("owner").get(acme.url(f"projects/{lab.pk}/agent-schedules/{schedule.pk}/")).status_code == 200
    mine = make_report(acme)
    assert [r["id"] for r in member.get(reports_url(acme)).json()["results"]] == [mine.pk]
    assert member.get(reports_url(acme, f"{mine.pk}/steps/")).status_code == 200
    assert AgentMessage.objects.filter(report=labs).count() == 2  # nothing asked


def test_a_finding_index_that_does_not_exist_is_404(acme: Tenant) -> None:
    report = make_report(acme)
    response = acme.client("owner").post(reports_url(acme, f"{report.pk}/findings/7/dataset/"), {}, format="json")
    assert response.status_code == 404
