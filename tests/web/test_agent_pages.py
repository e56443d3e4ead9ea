"""The evaluation agent's pages (Django test client): the reports list and its start form, a report with
its findings, evidence, steps and conversation, the question form, the schedules; what each role sees and
may do; another organization's or another project's report answering 404; bad input as field errors."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from evals.agent.models import AgentFinding, AgentMessage, AgentReport, AgentSchedule, AgentStep
from evals.models import LangfuseConnection
from gateway.services import routes
from portal import services
from portal.access import system_actor
from tests.factories import Tenant
from tests.factories import web_client as login

pytestmark = pytest.mark.django_db


def base(t: Tenant) -> str:
    return f"/orgs/{t.org.slug}/projects/{t.project.pk}/"


@dataclass
class Agent:
    report: AgentReport
    schedule: AgentSchedule

    @property
    def urls(self) -> list[str]:
        r, s = self.report.pk, self.schedule.pk
        return ["agent/", f"agent/{r}/", f"agent/{r}/progress.json", "agent/schedules/", f"agent/schedules/{s}/"]


def make_agent(t: Tenant, *, status: str = "succeeded") -> Agent:
    """A finished report of the tenant's project with two findings (one of them from a schedule's earlier
    report: known), a dropped one, five steps (one failed tool call), and a follow-up question answered
    with a tool call of its own; rows written directly, as the loop would."""
    slug = t.org.slug
    LangfuseConnection.objects.get_or_create(project=t.project, defaults={
        "host": "https://langfuse.example", "public_key": f"pk-{slug}", "secret_encrypted": "",
        "langfuse_project_id": f"lfp-{slug}"})
    # tests.factories.make_evals (the fuzz tests call both) makes a schedule of this name too
    schedule, _ = AgentSchedule.objects.get_or_create(project=t.project, name=f"{slug}-weekly",
                                                      defaults={"route": t.route, "focus": "refusals"})
    now = timezone.now()
    report = AgentReport.objects.create(
        project=t.project, route=t.route, schedule=schedule, status=status, focus=f"{slug}: why do answers fail?",
        window_start=now - dt.timedelta(days=7), window_end=now, steps_taken=4, tokens_used=5120,
        cost=Decimal("0.0123"), summary=f"{slug} summary: refusals on billing questions.", findings_dropped=1,
        dropped=[{"title": "Made-up pattern", "reason": "trace other-project-trace is not in the cited steps"}],
        started_at=now - dt.timedelta(seconds=42), finished_at=None if status == "running" else now,
        max_steps=20)
    AgentStep.objects.create(report=report, index=0, kind="model", content=f"{slug}: I will search the traces.",
                             prompt_tokens=900, completion_tokens=40, cost=Decimal("0.001"), arguments=[
                                 {"id": "call_1", "name": "search_traces", "arguments": '{"tags": ["billing"]}'},
                                 {"id": "call_2", "name": "read_trace", "arguments": '{"trace_id": "nope"}'}],
                             llm_trace_id=f"{slug}-llm-call-0")
    AgentStep.objects.create(report=report, index=1, kind="tool", tool_name="search_traces",
                             tool_call_id="call_1", arguments={"tags": ["billing"], "score_max": 0.5},
                             result_digest=f'{{"matched": 8, "rows": [{{"id": "{slug}-t1"}}]}}',
                             result={"matched": 8, "window_total": 32, "rows": [{"id": f"{slug}-t1"}]},
                             trace_ids=[f"{slug}-t1", f"{slug}-t2", "weird/../id"])
    AgentStep.objects.create(report=report, index=2, kind="tool", tool_name="read_trace", tool_call_id="call_2",
                             arguments={"trace_id": "nope"}, error="trace not found: nope")
    AgentStep.objects.create(report=report, index=3, kind="tool", tool_name="score_stats", tool_call_id="call_3",
                             arguments={"evaluator": "helpfulness"}, result_digest='{"rows": []}',
                             trace_ids=[f"{slug}-t3"])
    AgentFinding.objects.create(report=report, index=0, key="billing-refusals", title=f"{slug} billing refusals",
                                problem="The assistant refuses to answer billing questions.", count=8, share=0.25,
                                cost=Decimal("0.0420"), change_kind="prompt",
                                change="Say in the system prompt that billing questions are in scope.",
                                trace_ids=[f"{slug}-t1", f"{slug}-t2"], steps=[1], status="new")
    AgentFinding.objects.create(report=report, index=1, key="slow-answers", title=f"{slug} slow answers",
                                problem="p95 latency doubled.", count=3, share=None, cost=None, change_kind="route",
                                change="Route to a faster model.", trace_ids=[f"{slug}-t3"], steps=[3],
                                status="known")
    AgentMessage.objects.create(report=report, role="user", content=f"{slug}: since when do the refusals happen?",
                                created_by=t.users["owner"])
    answer = AgentMessage.objects.create(report=report, role="assistant", status="succeeded",
                                         content=f"{slug}: since Monday.", evidence=[
                                             {"trace_id": f"{slug}-t9", "steps": [4]}], evidence_dropped=1,
                                         finished_at=now)
    AgentStep.objects.create(report=report, message=answer, index=4, kind="tool", tool_name="compare",
                             arguments={"window_a": "last week"}, result_digest='{"a": 1}', trace_ids=[f"{slug}-t9"])
    return Agent(report, schedule)


def post_forms(html: str) -> int:
    return html.count('method="post"') - html.count('action="/logout/"')


def test_a_manager_gets_the_start_form_with_the_projects_routes_and_a_member_reads_the_list(
        acme: Tenant) -> None:
    agent = make_agent(acme)
    restricted = routes.route_create(actor=system_actor(acme.org, "tests"), data={
        "name": "other-teams", "deployments": [{"credential": None, "model": "m", "litellm_params": {
            "mock_response": "x"}}]})
    other_team = services.team_create(actor=system_actor(acme.org, "tests"), data={"name": "acme-other-team"})
    restricted.allowed_teams.set([other_team])
    for role in ("owner", "team_admin"):
        html = login(acme, role).get(f"{base(acme)}agent/").content.decode()
        assert 'id="agent-start"' in html and "Start an investigation" in html, role
        assert '<option value="chat"' in html and "other-teams" not in html
        assert f"#{agent.report.pk}" in html and "1 dropped" in html
    for role in ("member", "viewer"):
        answer = login(acme, role).get(f"{base(acme)}agent/")
        html = answer.content.decode()
        assert answer.status_code == 200 and post_forms(html) == 0 and f"#{agent.report.pk}" in html, role
        assert "Start an investigation" not in html
    nav = login(acme, "member").get(f"{base(acme)}runs/").content.decode()
    assert f'href="{base(acme)}agent/"' in nav  # the project's tabs link the agent


def test_the_report_page_shows_findings_with_evidence_steps_and_the_conversation(acme: Tenant) -> None:
    agent = make_agent(acme)
    answer = login(acme, "owner").get(f"{base(acme)}agent/{agent.report.pk}/")
    html = answer.content.decode()
    assert answer.status_code == 200
    assert "acme summary: refusals on billing questions." in html
    # a finding: what, how often, its share, cost, the change, the evidence linked to Langfuse and to steps
    assert "acme billing refusals" in html and "25.0% of the window" in html and "$0.0420" in html
    assert 'href="https://langfuse.example/project/lfp-acme/traces/acme-t1"' in html
    assert 'href="#step-1"' in html and 'id="step-1"' in html and "search_traces" in html
    assert '<span class="badge new"' in html and '<span class="badge known"' in html
    assert "Make a dataset" in html
    # a trace id from trace data is quoted into the link, never a path of its own
    assert "traces/weird%2F..%2Fid" in html and "traces/weird/../id" not in html
    # the steps: the model's message and its Langfuse call, the arguments, the digest, the failed call
    assert "acme: I will search the traces." in html and "lfp-acme/traces/acme-llm-call-0" in html
    assert 'Tool calls asked for in step 0' in html and "({&quot;trace_id&quot;: &quot;nope&quot;})" in html
    assert "&quot;billing&quot;" in html and "score_max" in html and "trace not found: nope" in html
    assert "has-error" in html
    # dropped findings with their reasons
    assert "1 dropped finding" in html and "Made-up pattern" in html and "not in the cited steps" in html
    # the conversation, the answer's evidence and its own tool call (not in the investigation's timeline)
    assert "since when do the refusals happen?" in html and "acme: since Monday." in html
    assert "lfp-acme/traces/acme-t9" in html and "1 step of this answer" in html
    assert "1 cited trace dropped" in html
    assert html.index('id="step-4"') > html.index('id="conversation"')
    assert 'id="ask"' in html and "Ask a follow-up question" in html
    assert "elapsed" in html and "5120" in html and "/ 20" in html  # progress: tokens, steps of max


def test_a_member_reads_the_report_without_write_actions(acme: Tenant) -> None:
    agent = make_agent(acme)
    for role in ("member", "viewer"):
        html = login(acme, role).get(f"{base(acme)}agent/{agent.report.pk}/").content.decode()
        assert "acme billing refusals" in html and "acme: since Monday." in html
        assert post_forms(html) == 0 and "Make a dataset" not in html and 'id="ask"' not in html, role
        assert login(acme, role).get(f"{base(acme)}agent/schedules/{agent.schedule.pk}/").status_code == 200


def test_a_running_report_refreshes_itself_and_offers_no_question_yet(acme: Tenant) -> None:
    agent = make_agent(acme, status="running")
    owner = login(acme, "owner")
    html = owner.get(f"{base(acme)}agent/{agent.report.pk}/").content.decode()
    assert 'data-working="1"' in html and 'http-equiv="refresh"' in html and "portal/agent.js" in html
    assert 'id="ask"' not in html and "once the investigation is done" in html
    progress = owner.get(f"{base(acme)}agent/{agent.report.pk}/progress.json")
    body = progress.json()
    assert progress["Cache-Control"] == "no-store"
    assert body["status"] == "running" and body["steps_taken"] == 4 and body["max_steps"] == 20
    assert body["tokens_used"] == 5120 and body["cost"] == "0.0123" and body["working"] is True
    assert 40 <= body["elapsed_seconds"] <= 100 and body["findings"] == 2
    AgentReport.objects.filter(pk=agent.report.pk).update(status="succeeded", finished_at=timezone.now())
    assert owner.get(f"{base(acme)}agent/{agent.report.pk}/progress.json").json()["working"] is False


def test_another_organizations_and_another_projects_reports_answer_404(acme: Tenant, globex: Tenant) -> None:
    agent = make_agent(acme)
    outsider = login(globex, "owner")
    for url in agent.urls:
        assert outsider.get(base(acme) + url).status_code == 404, url
    r, s = agent.report.pk, agent.schedule.pk
    writes = [(f"agent/{r}/questions/", {"content": "leak?"}), (f"agent/{r}/findings/0/dataset/", {}),
              (f"agent/schedules/{s}/delete/", {}), (f"agent/schedules/{s}/run/", {}),
              (f"agent/schedules/{s}/", {"name": "x"}), ("agent/", {"route": "chat"})]
    for url, body in writes:
        assert outsider.post(base(acme) + url, body).status_code == 404, url
    # acme's report under globex's own project, and under another project (of another team) of acme
    other = services.project_create(actor=system_actor(acme.org, "tests"), data={
        "name": "acme-elsewhere", "team": services.team_create(actor=system_actor(acme.org, "tests"),
                                                               data={"name": "acme-elsewhere-team"})})
    owner = login(acme, "owner")
    for prefix, client in ((base(globex), outsider), (f"/orgs/{acme.org.slug}/projects/{other.pk}/", owner)):
        for url in agent.urls[1:]:
            if url != "agent/schedules/":
                assert client.get(prefix + url).status_code == 404, (prefix, url)
        for url, body in writes[:4]:
            assert client.post(prefix + url, body).status_code == 404, (prefix, url)
    assert AgentMessage.objects.filter(report=agent.report).count() == 2
    assert AgentSchedule.objects.filter(pk=s).exists()
    assert "acme billing refusals" not in owner.get(f"/orgs/{acme.org.slug}/projects/{other.pk}/agent/"
                                                    ).content.decode()


def test_a_member_of_another_team_gets_404_on_the_report_and_sees_none_in_the_lists(acme: Tenant) -> None:
    """A report holds the project's usage by key, traces and scores: a member of the organization outside
    the project's team (who does not see that team's usage) does not see the project's reports either."""
    from django.test import Client

    from portal.models import OrgRole, TeamRole

    agent = make_agent(acme)
    system = system_actor(acme.org, "tests")
    outsider = services.member_add(actor=system, email="outsider@acme.test", role=OrgRole.MEMBER).user
    services.team_member_add(actor=system, team=services.team_create(actor=system, data={"name": "acme-other"}),
                             email="outsider@acme.test", role=TeamRole.ADMIN)
    client = Client()
    client.force_login(outsider)
    r, s = agent.report.pk, agent.schedule.pk
    for url in (f"agent/{r}/", f"agent/{r}/progress.json", f"agent/schedules/{s}/"):
        assert client.get(base(acme) + url).status_code == 404, url
    for url, body in ((f"agent/{r}/questions/", {"content": "leak?"}), (f"agent/{r}/findings/0/dataset/", {})):
        assert client.post(base(acme) + url, body).status_code == 404, url
    for url in ("agent/", "agent/schedules/"):
        page = client.get(base(acme) + url)
        assert page.status_code == 200 and "acme summary" not in page.content.decode(), url
        assert "acme-weekly" not in page.content.decode() and f"agent/{r}/" not in page.content.decode(), url
    member = login(acme, "member")  # the project's team's member sees them all
    assert member.get(base(acme) + f"agent/{r}/").status_code == 200
    assert f"agent/{r}/" in member.get(base(acme) + "agent/").content.decode()
    assert "acme-weekly" in member.get(base(acme) + "agent/schedules/").content.decode()
    assert AgentMessage.objects.filter(report=agent.report).count() == 2


def test_members_and_viewers_are_refused_every_write(acme: Tenant) -> None:
    agent = make_agent(acme)
    r, s = agent.report.pk, agent.schedule.pk
    writes = [("agent/", {"route": "chat"}), (f"agent/{r}/questions/", {"content": "why?"}),
              (f"agent/{r}/findings/0/dataset/", {}), ("agent/schedules/", {"name": "x", "route": "chat"}),
              (f"agent/schedules/{s}/", {"name": "renamed", "route": "chat"}),
              (f"agent/schedules/{s}/delete/", {}), (f"agent/schedules/{s}/run/", {})]
    counts = (AgentReport.objects.count(), AgentMessage.objects.count(), AgentSchedule.objects.count())
    for role in ("member", "viewer"):
        client = login(acme, role)
        for url, body in writes:
            assert client.post(base(acme) + url, body).status_code == 403, (role, url)
    assert (AgentReport.objects.count(), AgentMessage.objects.count(), AgentSchedule.objects.count()) == counts
    assert AgentSchedule.objects.get(pk=s).name == "acme-weekly"
    assert AgentFinding.objects.get(report=agent.report, index=0).dataset is None


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"max_steps": "0"}, "max_steps", "greater than or equal to 1"),
    ({"max_steps": "101"}, "max_steps", "less than or equal to 100"),
    ({"max_tokens": "lots"}, "max_tokens", "A valid integer is required."),
    ({"max_seconds": "5"}, "max_seconds", "greater than or equal to 10"),
    ({"max_spend": "free"}, "max_spend", "A valid number is required."),
    ({"max_spend": "1000"}, "max_spend", "less than or equal to 100"),
    ({"max_spend": "0"}, "max_spend", "greater than or equal to 0.0001"),
    ({"route": "no-such-route"}, "route", "does not exist"),
    ({"route": "other-teams"}, "route", "not available to this project&#x27;s team"),
    ({"window_start": "yesterday"}, "window_start", "Datetime has wrong format"),
    ({"window_start": "2026-01-02T00:00", "window_end": "2026-01-01T00:00"}, "window_end", "Must be after"),
    ({"window_start": "2025-01-01T00:00", "window_end": "2026-01-01T00:00"}, "window_start", "at most 90 days"),
    ({"focus": "x" * 2001}, "focus", "no more than 2000 characters"),
    ({"focus": "nul\x00byte"}, "focus", "Null characters are not allowed."),
])
def test_a_bad_start_form_shows_the_error_next_to_its_field_and_starts_nothing(
        acme: Tenant, body: dict[str, str], field: str, message: str) -> None:
    restricted = routes.route_create(actor=system_actor(acme.org, "tests"), data={
        "name": "other-teams", "deployments": [{"credential": None, "model": "m", "litellm_params": {
            "mock_response": "x"}}]})
    restricted.allowed_teams.set([services.team_create(actor=system_actor(acme.org, "tests"), data={"name": "t2"})])
    answer = login(acme, "owner").post(f"{base(acme)}agent/", {"route": "chat", **body})
    html = answer.content.decode()
    assert answer.status_code == 400 and "Not saved" in html
    assert message in html, html[html.find("field-error") - 200:][:600]
    assert not AgentReport.objects.exists()


def test_another_organizations_route_is_refused(acme: Tenant, globex: Tenant) -> None:
    routes.route_create(actor=system_actor(globex.org, "tests"), data={
        "name": "globex-only", "deployments": [{"credential": None, "model": "m", "litellm_params": {
            "mock_response": "x"}}]})
    answer = login(acme, "owner").post(f"{base(acme)}agent/", {"route": "globex-only"})
    assert answer.status_code == 400 and "does not exist" in answer.content.decode()
    assert not AgentReport.objects.exists()


def test_a_team_admin_starts_an_investigation_through_the_service(
        acme: Tenant, django_capture_on_commit_callbacks: Any, monkeypatch: Any) -> None:
    from evals import tasks_agent

    queued: list[int] = []
    monkeypatch.setattr(tasks_agent.agent_investigate, "delay", lambda report_id: queued.append(report_id))
    with django_capture_on_commit_callbacks(execute=True):
        answer = login(acme, "team_admin").post(f"{base(acme)}agent/", {
            "route": "chat", "focus": "  refusals on billing  ", "window_start": "2026-11-20T00:00",
            "window_end": "2026-11-27T00:00", "max_steps": "12", "max_tokens": "50000", "max_seconds": "120",
            "max_spend": "0.25"})
    report = AgentReport.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"{base(acme)}agent/{report.pk}/"
    assert queued == [report.pk]
    assert (report.status, report.route, report.focus, report.created_by) == (
        "queued", acme.route, "refusals on billing", acme.users["team_admin"])
    assert report.window_start == dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert (report.max_steps, report.max_tokens, report.max_seconds, report.max_spend) == (12, 50000, 120,
                                                                                         Decimal("0.25"))
    page = login(acme, "team_admin").get(answer["Location"]).content.decode()
    assert "Investigation #" in page and 'data-working="1"' in page


def test_ask_a_question_through_the_service_and_refusals_show_as_form_errors(
        acme: Tenant, monkeypatch: Any) -> None:
    from evals import tasks_agent

    monkeypatch.setattr(tasks_agent.agent_answer, "delay", lambda message_id: None)
    agent = make_agent(acme)
    owner, url = login(acme, "owner"), f"{base(acme)}agent/{agent.report.pk}/questions/"
    empty = owner.post(url, {"content": "   "})
    assert empty.status_code == 400 and "This field may not be blank." in empty.content.decode()
    nul = owner.post(url, {"content": "why\x00?"})
    assert nul.status_code == 400 and "Null characters are not allowed." in nul.content.decode()
    asked = owner.post(url, {"content": "Which users see the refusals?"})
    assert asked.status_code == 302 and asked["Location"].endswith(f"/agent/{agent.report.pk}/#conversation")
    question, answer = AgentMessage.objects.filter(report=agent.report).order_by("-pk")[:2][::-1]
    assert (question.role, question.content, answer.role, answer.status) == (
        "user", "Which users see the refusals?", "assistant", "queued")
    # while the answer is queued the service refuses another question: a form error, the question kept
    again = owner.post(url, {"content": "And since when?"})
    html = again.content.decode()
    assert again.status_code == 400 and "still being answered" in html and "And since when?" in html
    assert AgentMessage.objects.filter(report=agent.report).count() == 4
    assert "Traceback" not in html


def test_schedules_are_created_and_edited_through_the_service_with_field_errors(acme: Tenant) -> None:
    owner = login(acme, "owner")
    form = owner.get(f"{base(acme)}agent/schedules/").content.decode()
    assert 'value="0 6 * * 1"' in form and 'value="168"' in form  # the model's defaults: weekly, 7 days back
    good = {"name": "weekly", "cron": "0 6 * * 1", "route": "chat", "lookback_hours": "168",
            "max_steps": "20", "max_tokens": "200000", "max_seconds": "600", "max_spend": "1.00",
            "alert_growth": "0.5", "alert_on_new": "on", "enabled": "on", "focus": "refusals"}
    for body, message in (({"cron": "every monday"}, "Not a 5-field crontab"),
                          ({"lookback_hours": "0"}, "greater than or equal to 1"),
                          ({"alert_growth": "-1"}, "greater than or equal to 0.0"),
                          ({"name": ""}, "This field is required."),
                          ({"max_spend": "500"}, "less than or equal to 100"),
                          ({"route": "0"}, "does not exist")):
        bad = owner.post(f"{base(acme)}agent/schedules/", good | body)
        assert bad.status_code == 400 and message in bad.content.decode(), body
    assert not AgentSchedule.objects.exists()
    created = owner.post(f"{base(acme)}agent/schedules/", good)
    schedule = AgentSchedule.objects.get()
    assert created.status_code == 302 and schedule.periodic_task is not None and schedule.periodic_task.enabled
    assert (schedule.name, schedule.cron, schedule.focus, schedule.alert_growth) == ("weekly", "0 6 * * 1",
                                                                                    "refusals", 0.5)
    listing = owner.get(f"{base(acme)}agent/schedules/").content.decode()
    assert "weekly" in listing and "<code>0 6 * * 1</code>" in listing
    edited = owner.post(f"{base(acme)}agent/schedules/{schedule.pk}/", good | {
        "cron": "0 7 * * *", "alert_growth": "", "enabled": ""})
    schedule.refresh_from_db()
    assert edited.status_code == 302 and schedule.cron == "0 7 * * *" and schedule.alert_growth is None
    assert not schedule.enabled and schedule.periodic_task is not None
    schedule.periodic_task.refresh_from_db()
    assert not schedule.periodic_task.enabled
    deleted = owner.post(f"{base(acme)}agent/schedules/{schedule.pk}/delete/")
    assert deleted.status_code == 302 and not AgentSchedule.objects.exists()


def test_make_a_dataset_of_a_findings_traces(acme: Tenant, langfuse_standin: Any) -> None:
    from evals.models import Dataset, DatasetItem
    from tests.factories import connect_langfuse

    connect_langfuse(acme, langfuse_standin)
    ids = langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 3, name="support-chat")
    agent = make_agent(acme)
    AgentFinding.objects.filter(report=agent.report, index=0).update(trace_ids=ids[:2])
    owner = login(acme, "owner")
    made = owner.post(f"{base(acme)}agent/{agent.report.pk}/findings/0/dataset/")
    finding = AgentFinding.objects.get(report=agent.report, index=0)
    assert finding.dataset is not None and made.status_code == 302
    assert made["Location"] == f"{base(acme)}datasets/{finding.dataset.pk}/"
    assert set(DatasetItem.objects.filter(dataset=finding.dataset).values_list("source_trace_id", flat=True)) == set(
        ids[:2])
    page = owner.get(f"{base(acme)}agent/{agent.report.pk}/").content.decode()
    assert f'href="{base(acme)}datasets/{finding.dataset.pk}/"' in page  # the finding links its dataset now
    assert owner.post(f"{base(acme)}agent/{agent.report.pk}/findings/7/dataset/").status_code == 404
    assert Dataset.objects.filter(project=acme.project).count() == 1


def test_a_dataset_langfuse_cannot_give_is_a_message_not_a_traceback(acme: Tenant) -> None:
    from evals.models import Dataset

    agent = make_agent(acme)  # its connection's host is outside what the tests allow: Langfuse is refused
    owner = login(acme, "owner")
    made = owner.post(f"{base(acme)}agent/{agent.report.pk}/findings/0/dataset/", follow=True)
    html = made.content.decode()
    assert made.status_code == 200 and made.redirect_chain[-1][0].endswith(f"/agent/{agent.report.pk}/#finding-0")
    assert 'class="error"' in html and "Traceback" not in html
    assert not Dataset.objects.exists() and AgentFinding.objects.get(report=agent.report, index=0).dataset is None


def test_investigate_a_schedule_now_once_at_a_time(acme: Tenant) -> None:
    agent = make_agent(acme)
    owner, url = login(acme, "owner"), f"{base(acme)}agent/schedules/{agent.schedule.pk}/run/"
    started = owner.post(url)
    report = AgentReport.objects.filter(schedule=agent.schedule, status="queued").get()
    assert started.status_code == 302 and started["Location"] == f"{base(acme)}agent/{report.pk}/"
    assert (report.focus, report.route, report.max_steps) == ("refusals", acme.route, agent.schedule.max_steps)
    again = owner.post(url, follow=True)
    html = again.content.decode()
    assert again.status_code == 200 and "in progress" in html and "Traceback" not in html
    assert AgentReport.objects.filter(schedule=agent.schedule).count() == 2  # make_agent's and the one started
    schedule_page = owner.get(f"{base(acme)}agent/schedules/{agent.schedule.pk}/").content.decode()
    assert f"#{report.pk}" in schedule_page and f"#{agent.report.pk}" in schedule_page


def test_a_report_the_loop_wrote_shows_on_its_page(acme: Tenant, monkeypatch: Any) -> None:
    """Started on the page, investigated by the real loop (a scripted model and fixed tools, as
    tests/evals/test_agent_schedules.py runs it), read back on the page: the rows as the loop writes them."""
    from evals.agent import loop
    from tests.agent_script import call, finding_from, last
    from tests.evals.test_agent_loop import Tools, finish, search, use

    monkeypatch.setattr(loop, "tools", Tools())
    monkeypatch.setattr(loop, "service_key", lambda project: "sk-service")

    def record(body: dict[str, Any]) -> dict[str, Any]:
        return call("record_finding", finding_from(last(body, "search_traces"), title="Wrong language", count=3))

    use(monkeypatch, search, record, finish)
    owner = login(acme, "owner")
    assert owner.post(f"{base(acme)}agent/", {"route": "chat", "focus": "languages"}).status_code == 302
    report = loop.investigate(AgentReport.objects.get().pk)
    assert report is not None and report.status == "succeeded"
    finding = AgentFinding.objects.get(report=report)
    html = owner.get(f"{base(acme)}agent/{report.pk}/").content.decode()
    assert "Wrong language" in html and report.summary and report.summary.split("\n")[0][:30] in html
    for index in finding.steps:
        assert f'href="#step-{index}"' in html and f'id="step-{index}"' in html
    for trace_id in finding.trace_ids:
        assert trace_id in html
    tool_step = AgentStep.objects.filter(report=report, kind="tool").first()
    assert tool_step is not None and f'<span class="tool">{tool_step.tool_name}</span>' in html
    steps = list(AgentStep.objects.filter(report=report).values_list("index", "kind", "tool_name", "arguments"))
    asked = next(s for s in steps if s[1] == "model" and s[3])
    assert f"Tool calls asked for in step {asked[0]}" in html, steps  # the model step lists the calls it asked
