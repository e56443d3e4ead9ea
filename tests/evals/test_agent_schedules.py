"""The agent's schedules: CRUD through the API with their Celery beat entries,
`run/` and beat's tick, tenancy, and what follows a scheduled report: findings
marked new / known / grown against the schedule's previous finished report and
an alert (email and webhook) when one appears or grows, none when nothing changed."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django_celery_beat.models import PeriodicTask

from evals.agent import schedules
from evals.agent.models import AgentFinding, AgentReport, AgentSchedule
from evals.tasks_agent import agent_run_schedule
from gateway.services import routes
from portal.access import system_actor
from tests.evals.test_agent_api import NOW, make_report, other_team_project
from tests.factories import ROLES, Tenant

pytestmark = pytest.mark.django_db


def url(t: Tenant, path: str = "", project: Any = None) -> str:
    return t.url(f"projects/{(project or t.project).pk}/agent-schedules/{path}")


def make_schedule(t: Tenant, project: Any = None, **data: Any) -> AgentSchedule:
    return schedules.schedule_save(actor=system_actor(t.org, "tests"), project=project or t.project,
                                   data={"name": f"{t.org.slug} weekly", "route": t.route, **data})


# CRUD and beat ----------------------------------------------------------------

def test_a_schedule_is_weekly_by_default_on_beat_and_follows_its_changes(acme: Tenant) -> None:
    for role in ("member", "viewer"):
        assert acme.client(role).post(url(acme), {"name": "x", "route": "chat"}, format="json").status_code == 403
    response = acme.client("team_admin").post(url(acme), {"name": "weekly", "route": "chat", "focus": "refusals"},
                                              format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["cron"], body["lookback_hours"], body["alert_on_new"], body["alert_growth"], body["route"]) == \
        ("0 6 * * 1", 168, True, 0.5, "chat")
    schedule = AgentSchedule.objects.get(pk=body["id"])
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert (task.task, json.loads(task.args), task.queue, task.enabled) == (
        "evals.tasks_agent.agent_run_schedule", [schedule.pk], "evals", True)
    assert agent_run_schedule.name == task.task and agent_run_schedule.queue == "evals"
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week, str(task.crontab.timezone)) == \
        ("0", "6", "1", "UTC")
    for role in ROLES:
        assert [s["id"] for s in acme.client(role).get(url(acme)).json()["results"]] == [schedule.pk]

    changed = acme.client("team_admin").patch(url(acme, f"{schedule.pk}/"), {"cron": "30 */2 * * *",
                                                                           "enabled": False}, format="json")
    assert changed.status_code == 200, changed.content
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, task.enabled) == ("30", "*/2", False)
    hourly = acme.client("team_admin").patch(url(acme, f"{schedule.pk}/"), {"cron": "0 * * * *"}, format="json")
    assert hourly.status_code == 200, hourly.content  # hourly is the most often
    assert acme.client("member").delete(url(acme, f"{schedule.pk}/")).status_code == 403
    assert acme.client("team_admin").delete(url(acme, f"{schedule.pk}/")).status_code == 204
    assert not PeriodicTask.objects.filter(pk=task.pk).exists() and not AgentSchedule.objects.exists()


def test_the_schedule_list_reads_last_reports_in_its_query(acme: Tenant, django_assert_max_num_queries: Any) -> None:
    """R2-8: each row's last report is annotated, not one query per schedule."""
    def listed() -> list[dict[str, Any]]:
        with django_assert_max_num_queries(12):
            response = acme.client("viewer").get(url(acme))
        assert response.status_code == 200
        return list(response.json()["results"])

    for i in range(10):
        schedule = make_schedule(acme, name=f"s{i}")
        for hours in (3, 1):
            last = make_report(acme, schedule=schedule, status="failed" if hours == 1 else "succeeded",
                               created_at=NOW - dt.timedelta(hours=hours))
    rows = {r["name"]: r["last_report"] for r in listed()}
    assert len(rows) == 10 and (rows["s9"]["id"], rows["s9"]["status"]) == (last.pk, "failed")
    make_schedule(acme, name="never")
    assert {r["name"]: r["last_report"] for r in listed()}["never"] is None


@pytest.mark.parametrize("body,field", [
    ({"name": "s", "route": "chat", "cron": "every monday"}, "cron"),
    ({"name": "s", "route": "chat", "cron": "61 * * * *"}, "cron"),
    # R1-6: more often than hourly (each report may spend up to max_spend)
    ({"name": "s", "route": "chat", "cron": "* * * * *"}, "cron"),
    ({"name": "s", "route": "chat", "cron": "*/30 * * * *"}, "cron"),
    ({"name": "s", "route": "chat", "cron": "0,30 6 * * 1"}, "cron"),
    ({"name": "s", "route": "chat", "cron": "0-1 * * * *"}, "cron"),
    ({"name": "s", "route": "nope"}, "route"),
    ({"name": "s"}, "route"),
    ({"name": "s", "route": "chat", "lookback_hours": 0}, "lookback_hours"),
    ({"name": "s", "route": "chat", "lookback_hours": 24 * 91}, "lookback_hours"),
    ({"name": "s", "route": "chat", "alert_growth": -1}, "alert_growth"),
    ({"name": "s", "route": "chat", "max_steps": 0}, "max_steps"),
    ({"name": "s", "route": "chat", "max_spend": "0"}, "max_spend"),
    ({"name": "", "route": "chat"}, "name"),
])
def test_bad_schedules_are_400_with_the_field(acme: Tenant, body: dict[str, Any], field: str) -> None:
    response = acme.client("team_admin").post(url(acme), body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not AgentSchedule.objects.exists() and not PeriodicTask.objects.filter(
        task="evals.tasks_agent.agent_run_schedule").exists()


def test_duplicate_names_and_routes_of_another_team_are_refused(acme: Tenant) -> None:
    make_schedule(acme, name="weekly")
    again = acme.client("team_admin").post(url(acme), {"name": "weekly", "route": "chat"}, format="json")
    assert again.status_code == 400 and list(again.json()) == ["name"]
    lab = other_team_project(acme)
    routes.route_create(actor=system_actor(acme.org, "t"), data={"name": "lab-only", "allowed_teams": [lab.team],
                                                                "deployments": [{"model": "m", "litellm_params": {
                                                                    "mock_response": "hi"}}]})
    other = acme.client("owner").post(url(acme), {"name": "lab", "route": "lab-only"}, format="json")
    assert other.status_code == 400 and list(other.json()) == ["route"], other.content
    assert AgentSchedule.objects.count() == 1


def test_a_schedule_whose_route_was_disabled_can_be_switched_off_not_on(acme: Tenant) -> None:
    schedule = make_schedule(acme, name="weekly")
    routes.route_update(actor=system_actor(acme.org, "t"), route=acme.route, data={"is_active": False})
    failed = AgentReport.objects.get(pk=agent_run_schedule.apply(args=(schedule.pk,)).get())  # no investigation
    assert failed.status == "failed" and failed.steps_taken == 0
    off = acme.client("team_admin").patch(url(acme, f"{schedule.pk}/"), {"enabled": False}, format="json")
    assert off.status_code == 200, off.content
    on = acme.client("team_admin").patch(url(acme, f"{schedule.pk}/"), {"enabled": True}, format="json")
    assert on.status_code == 400 and list(on.json()) == ["route"], on.content
    assert agent_run_schedule.apply(args=(schedule.pk,)).get() is None  # switched off: nothing
    assert list(AgentReport.objects.all()) == [failed]


def test_a_tick_that_cannot_start_is_a_failed_report_and_alerts_once_per_reason(
        acme: Tenant, hooks: list[dict[str, Any]], caplog: Any) -> None:
    """R2-7: the route disabled (or taken from the team) since: each tick leaves a failed report saying why,
    listed and on the schedule; the first alerts, the same reason again does not; a new reason does."""
    schedule = make_schedule(acme, name="weekly")
    routes.route_update(actor=system_actor(acme.org, "t"), route=acme.route, data={"is_active": False})
    with caplog.at_level("WARNING", logger="evals.agent.schedules"):
        first = AgentReport.objects.get(pk=agent_run_schedule.apply(args=(schedule.pk,)).get())
    assert first.status == "failed" and first.schedule_id == schedule.pk and first.finished_at
    assert "route 'chat'" in first.error and "not available" in first.error, first.error
    assert any(r.levelname == "WARNING" and "route 'chat'" in r.getMessage() for r in caplog.records)
    listed = acme.client("viewer").get(acme.url(f"projects/{acme.project.pk}/reports/"), {"status": "failed"})
    assert [(r["id"], r["error"]) for r in listed.json()["results"]] == [(first.pk, first.error)]
    row = acme.client("viewer").get(url(acme, f"{schedule.pk}/")).json()
    assert (row["last_report"]["id"], row["last_report"]["status"]) == (first.pk, "failed")
    assert len(mail.outbox) == 1 and "failed" in mail.outbox[0].subject and first.error in mail.outbox[0].body
    assert f"/agent/{first.pk}/" in mail.outbox[0].body
    assert [(h["kind"], h["report"], h["error"]) for h in hooks] == [("agent_failed", first.pk, first.error)]

    second = AgentReport.objects.get(pk=agent_run_schedule.apply(args=(schedule.pk,)).get())
    assert second.status == "failed" and second.error == first.error
    assert len(mail.outbox) == 1 and len(hooks) == 1  # the same reason: not alerted again

    routes.route_update(actor=system_actor(acme.org, "t"), route=acme.route, data={"is_active": True})
    AgentReport.objects.create(project=acme.project, route=acme.route, schedule=schedule, status="failed",
                               window_start=NOW - dt.timedelta(days=7), window_end=NOW, error="budget exhausted")
    routes.route_update(actor=system_actor(acme.org, "t"), route=acme.route, data={"is_active": False})
    agent_run_schedule.apply(args=(schedule.pk,)).get()
    assert len(mail.outbox) == 2 and len(hooks) == 2  # another reason in between: alerted again


def test_a_scheduled_report_that_fails_alerts_once_per_reason(acme: Tenant, hooks: list[dict[str, Any]]) -> None:
    schedule = make_schedule(acme)
    one = scheduled(acme, schedule, 3, status="failed", findings={})
    AgentReport.objects.filter(pk=one.pk).update(error="The model failed: 503")
    one.refresh_from_db()
    assert schedules.after_report(one) == []
    assert len(mail.outbox) == 1 and f"report {one.pk} failed" in mail.outbox[0].subject
    assert "The model failed: 503" in mail.outbox[0].body and hooks[0]["kind"] == "agent_failed"
    two = scheduled(acme, schedule, 2, status="failed", findings={})
    AgentReport.objects.filter(pk=two.pk).update(error="The model failed: 503")
    two.refresh_from_db()
    schedules.after_report(two)
    assert len(mail.outbox) == 1 and len(hooks) == 1
    schedules.after_report(make_report(acme, status="failed"))  # unscheduled: no alert
    assert len(mail.outbox) == 1


# run now and beat's tick --------------------------------------------------------

def test_run_now_queues_a_report_of_the_lookback_and_one_at_a_time(acme: Tenant,
                                                                   django_capture_on_commit_callbacks: Any) -> None:
    schedule = make_schedule(acme, lookback_hours=24, focus="refusals", max_steps=7)
    assert acme.client("member").post(url(acme, f"{schedule.pk}/run/")).status_code == 403
    with django_capture_on_commit_callbacks() as queued:
        response = acme.client("team_admin").post(url(acme, f"{schedule.pk}/run/"))
    assert response.status_code == 202, response.content
    report = AgentReport.objects.get(pk=response.json()["id"])
    assert (report.schedule_id, report.focus, report.max_steps, report.status) == (schedule.pk, "refusals", 7,
                                                                                   "queued")
    assert report.window_end - report.window_start == dt.timedelta(hours=24) and len(queued) == 1
    busy = acme.client("team_admin").post(url(acme, f"{schedule.pk}/run/"))
    assert busy.status_code == 409 and AgentReport.objects.count() == 1


def test_beats_tick_makes_a_report_unless_the_schedule_is_off_or_busy(acme: Tenant) -> None:
    schedule = make_schedule(acme)
    first = agent_run_schedule.apply(args=(schedule.pk,)).get()
    assert AgentReport.objects.get(pk=first).schedule_id == schedule.pk
    assert agent_run_schedule.apply(args=(schedule.pk,)).get() is None  # the last one is still queued
    AgentReport.objects.update(status="succeeded")
    schedules.schedule_save(actor=system_actor(acme.org, "t"), project=acme.project, data={"enabled": False},
                            schedule=schedule)
    assert agent_run_schedule.apply(args=(schedule.pk,)).get() is None
    assert agent_run_schedule.apply(args=(10**9,)).get() is None
    assert AgentReport.objects.count() == 1


# tenancy ------------------------------------------------------------------------

def test_another_organizations_or_projects_schedules_are_404_and_never_listed(acme: Tenant, globex: Tenant) -> None:
    mine, theirs = make_schedule(acme), make_schedule(globex)
    lab = other_team_project(acme)
    labs = make_schedule(acme, lab, name="lab weekly")
    for role in ROLES:
        assert [s["id"] for s in acme.client(role).get(url(acme)).json()["results"]] == [mine.pk]
        for other in (theirs, labs):
            for method, path in (("get", f"{other.pk}/"), ("patch", f"{other.pk}/"), ("delete", f"{other.pk}/"),
                                 ("post", f"{other.pk}/run/")):
                response = getattr(acme.client(role), method)(url(acme, path), {"enabled": False}, format="json")
                assert response.status_code == (403 if role == "viewer" and method != "get" else 404), \
                    (role, method, path, response.status_code)
                assert "globex" not in response.content.decode()
    outsider = globex.client("owner")
    assert outsider.get(url(acme)).status_code == 404
    assert outsider.get(url(acme, f"{mine.pk}/")).status_code == 404
    assert outsider.post(url(acme, f"{mine.pk}/run/")).status_code == 404
    # the lab's own URL: acme's team admin is outside the lab's team, so does not see its schedules (R2-11's
    # row rule: they are read by those who read the team's usage), nor manages it; an org viewer reads them
    assert acme.client("team_admin").get(url(acme, f"{labs.pk}/", lab)).status_code == 404
    assert acme.client("viewer").get(url(acme, f"{labs.pk}/", lab)).status_code == 200
    assert acme.client("team_admin").post(url(acme, f"{labs.pk}/run/", lab)).status_code == 404
    assert acme.client("team_admin").delete(url(acme, f"{labs.pk}/", lab)).status_code == 404
    assert acme.client("viewer").post(url(acme, f"{labs.pk}/run/", lab)).status_code == 403
    assert AgentSchedule.objects.filter(enabled=True).count() == 3 and not AgentReport.objects.exists()


# after a scheduled report: new / known / grown, and alerts ---------------------------

class Hooks(ThreadingHTTPServer):
    """The organization's alert webhook: records each JSON body it is posted."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                hooks.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def hooks(acme: Tenant) -> Iterator[list[dict[str, Any]]]:
    server = Hooks()
    acme.org.alert_webhook_url = f"http://127.0.0.1:{server.server_port}/hook"
    acme.org.alert_emails = "oncall@acme.test"
    acme.org.save()
    yield server.received
    server.shutdown()
    server.server_close()


def scheduled(t: Tenant, schedule: AgentSchedule, hours_ago: int, *, status: str = "succeeded",
              findings: dict[str, float | None]) -> AgentReport:
    report = make_report(t, schedule=schedule, status=status, findings=0, created_at=NOW - dt.timedelta(hours=hours_ago))
    for index, (key, share) in enumerate(findings.items()):
        AgentFinding.objects.create(report=report, index=index, key=key, title=f"{key} title", problem="p",
                                    count=10, share=share, change_kind="prompt", change="c", trace_ids=["tr-1"],
                                    steps=[1])
    return report


def marks(report: AgentReport) -> dict[str, str]:
    return dict(report.findings.values_list("key", "status"))


def test_findings_are_new_known_or_grown_and_only_changes_alert(acme: Tenant, hooks: list[dict[str, Any]]) -> None:
    schedule = make_schedule(acme, alert_growth=0.5)
    first = scheduled(acme, schedule, 30, findings={"wrong-language": 0.2})
    assert [f.key for f in schedules.after_report(first)] == ["wrong-language"]
    assert marks(first) == {"wrong-language": "new"}
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["oncall@acme.test"]
    assert "1 new finding" in mail.outbox[0].subject and "wrong-language title" in mail.outbox[0].body
    assert hooks[0]["kind"] == "agent" and hooks[0]["report"] == first.pk and hooks[0]["organization"] == "acme"
    assert [f["key"] for f in hooks[0]["new"]] == ["wrong-language"] and hooks[0]["grown"] == []

    scheduled(acme, schedule, 20, status="failed", findings={"other": 0.9})  # not a finished report
    second = scheduled(acme, schedule, 10, findings={"wrong-language": 0.28})  # +40%: not beyond 0.5
    assert schedules.after_report(second) == []
    assert marks(second) == {"wrong-language": "known"}
    assert len(mail.outbox) == 1 and len(hooks) == 1  # nothing changed, nothing sent

    third = scheduled(acme, schedule, 1, findings={"wrong-language": 0.45, "tool-errors": 0.1})  # +61%, and new
    assert sorted(f.key for f in schedules.after_report(third)) == ["tool-errors", "wrong-language"]
    assert marks(third) == {"wrong-language": "grown", "tool-errors": "new"}
    assert len(mail.outbox) == 2 and "1 new finding, 1 finding grew" in mail.outbox[1].subject
    grown = hooks[1]["grown"][0]
    assert (grown["key"], grown["share"], grown["previous_share"]) == ("wrong-language", 0.45, 0.28)


def test_no_alert_for_new_findings_when_switched_off_nor_for_unscheduled_or_failed_reports(
        acme: Tenant, hooks: list[dict[str, Any]]) -> None:
    quiet = make_schedule(acme, alert_on_new=False, alert_growth=None)
    first = scheduled(acme, quiet, 10, findings={"refusals": 0.1})
    second = scheduled(acme, quiet, 1, findings={"refusals": 0.9, "latency": 0.2})
    assert schedules.after_report(first) == [] and schedules.after_report(second) == []
    assert marks(second) == {"refusals": "known", "latency": "new"}  # marked, not alerted
    failed = scheduled(acme, quiet, 0, status="failed", findings={"x": 0.5})
    assert schedules.after_report(failed) == []
    assert marks(failed) == {"x": "new"}  # not marked: a failed report is no comparison
    unscheduled = make_report(acme)
    assert schedules.after_report(unscheduled) == []
    assert [h["kind"] for h in hooks] == ["agent_failed"] and len(mail.outbox) == 1  # the failure, no finding


def test_the_previous_report_is_this_schedules_own(acme: Tenant, hooks: list[dict[str, Any]]) -> None:
    one, two = make_schedule(acme, name="one"), make_schedule(acme, name="two")
    scheduled(acme, one, 10, findings={"refusals": 0.1})
    report = scheduled(acme, two, 1, findings={"refusals": 0.1})
    assert [f.key for f in schedules.after_report(report)] == ["refusals"]  # new for schedule two
    assert marks(report) == {"refusals": "new"} and len(mail.outbox) == 1


def test_an_alert_shows_the_agents_titles_short_and_without_links(acme: Tenant, hooks: list[dict[str, Any]],
                                                                   settings: Any) -> None:
    """R2-14: a finding's title is the model's words, shaped by trace content: an injected one reaches the
    alert shortened, its links disabled, the mail says so and links to the report's page."""
    settings.PORTAL_PUBLIC_URL = "https://portal.acme.test"
    schedule = make_schedule(acme)
    report = scheduled(acme, schedule, 1, findings={"injected": 0.3})
    injected = "Security: www.evil.example says rotate keys at https://evil.example/r\nSubject: urgent " + "x" * 60
    AgentFinding.objects.filter(report=report).update(title=injected)
    schedules.after_report(report)
    body = mail.outbox[0].body
    for text in (body, json.dumps(hooks[0])):
        assert "https://evil" not in text and "www.evil" not in text and "x" * 50 not in text
    assert "hxxps://evil[.]example/r" in body and "www[.]evil[.]example" in body
    assert "\nSubject: urgent" not in body  # one line
    assert "the agent's words" in body and "links disabled" in body
    page = f"https://portal.acme.test/orgs/acme/projects/{acme.project.pk}/agent/{report.pk}/"
    assert page in body and hooks[0]["url"] == page
    title = hooks[0]["new"][0]["title"]
    assert title.startswith("Security: www[.]evil[.]example says rotate keys at hxxps://evil[.]example/r")
    assert len(title) <= 80


# the whole way: beat's tick, the loop (a scripted model, fixed tools), after_report, the alert ----------

@pytest.fixture
def scripted_tools(monkeypatch: Any) -> Any:
    from evals.agent import loop
    from tests.evals.test_agent_loop import Tools

    fake = Tools()
    monkeypatch.setattr(loop, "tools", fake)
    monkeypatch.setattr(loop, "service_key", lambda project: "sk-service")
    return fake


def investigate_with(monkeypatch: Any, count: int, report_id: int) -> AgentReport:
    from evals.agent import loop
    from tests.agent_script import call, finding_from, last
    from tests.evals.test_agent_loop import finish, search, use

    def record(body: dict[str, Any]) -> dict[str, Any]:
        return call("record_finding", finding_from(last(body, "search_traces"), title="Wrong language",
                                                   count=count))

    use(monkeypatch, search, record, finish)
    done = loop.investigate(report_id)
    assert done is not None and done.status == "succeeded", done
    return done


def test_scheduled_investigations_alert_when_a_finding_appears_and_when_it_grows(
        acme: Tenant, hooks: list[dict[str, Any]], scripted_tools: Any, monkeypatch: Any) -> None:
    schedule = make_schedule(acme, alert_growth=0.5)
    first = investigate_with(monkeypatch, 10, agent_run_schedule.apply(args=(schedule.pk,)).get())
    assert marks(first) == {"wrong-language": "new"} and first.findings.get().share == 0.1
    assert len(hooks) == 1 and hooks[0]["new"][0]["title"] == "Wrong language" and len(mail.outbox) == 1
    same = investigate_with(monkeypatch, 12, agent_run_schedule.apply(args=(schedule.pk,)).get())
    assert marks(same) == {"wrong-language": "known"} and len(hooks) == 1  # +20%: no alert
    grown = investigate_with(monkeypatch, 30, agent_run_schedule.apply(args=(schedule.pk,)).get())
    assert marks(grown) == {"wrong-language": "grown"} and len(hooks) == 2 and len(mail.outbox) == 2
    assert (hooks[1]["grown"][0]["previous_share"], hooks[1]["grown"][0]["share"]) == (0.12, 0.3)
