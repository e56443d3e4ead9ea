"""Siblings of issue 8's holes that nobody listed, tried as a hostile tenant
through the real REST API (no proxies: fast).

Each test is an attack that succeeded on the code before its fix."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from django.utils import timezone

from evals.models import EvalRun, EvalSchedule, Evaluator, RunStatus
from gateway import usage
from gateway.models import ModelRoute, VirtualKey
from gateway.services import keys, routes
from portal import services
from portal.access import system_actor
from portal.models import Project, Team, TeamRole
from tests.factories import Tenant, api

pytestmark = pytest.mark.django_db


def project_url(t: Tenant, path: str, project: Project | None = None) -> str:
    return t.url(f"projects/{(project or t.project).pk}/{path}")


def other_team(t: Tenant) -> tuple[Team, Project, VirtualKey]:
    """A second team of the tenant that the member and the team admin are not in,
    with a project, a key owned by the org admin, and a day of usage on it."""
    system = system_actor(t.org, "tests")
    team = services.team_create(actor=system, data={"name": f"{t.org.slug}-research"})
    services.team_member_add(actor=system, team=team, email=f"admin@{t.org.slug}.test", role=TeamRole.ADMIN)
    project = services.project_create(actor=system, data={"name": f"{t.org.slug}-secret-lab", "team": team})
    key = keys.key_create(actor=system, data={"name": f"{t.org.slug} research key", "team": team,
                                              "project": project, "owner": t.users["admin"]}).key
    # Through the consumer's own write, so that every rollup (per key, project, team) has the day.
    usage.store([{"request_id": uuid.uuid4().hex, "ts": time.time(), "key_id": key.pk, "key_hash": "x",
                  "org": t.org.pk, "team": team.pk, "project": project.pk, "owner": f"admin@{t.org.slug}.test",
                  "route": "chat", "group": f"{t.org.slug}/chat", "prompt_tokens": 1, "completion_tokens": 1,
                  "cost_nano": 500_000_000, "latency_ms": 10, "status": "success"} for _ in range(7)])
    return team, project, key


def viewer_token_of(t: Tenant, role: str) -> str:
    """The attacker lowers its own token: a viewer-level token of a member."""
    response = t.client(role).post(t.url("tokens/"), {"name": "lowered", "role": "viewer"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["token"])


# A token's lower role widens what a member sees ----------------------------------------------------


@pytest.mark.parametrize("role", ["member", "team_admin"])
def test_a_members_viewer_token_does_not_see_other_teams_usage(acme: Tenant, role: str) -> None:
    _, project, key = other_team(acme)
    own = acme.client(role).get(acme.url("usage/"), {"group_by": "key"}).json()
    assert own["totals"]["requests"] == 0  # the member itself sees only its teams' usage
    lowered = api(viewer_token_of(acme, role))
    for group_by in ("key", "project", "user", "team", "day"):
        body = lowered.get(acme.url("usage/"), {"group_by": group_by}).json()
        assert body["totals"]["requests"] == 0, (group_by, body)
        assert "research" not in str(body) and "secret-lab" not in str(body), body
    filtered = lowered.get(acme.url("usage/"), {"group_by": "route", "key": key.pk, "project": project.pk}).json()
    assert filtered["totals"]["cost"] == 0, filtered


@pytest.mark.parametrize("role", ["member", "team_admin"])
def test_a_members_viewer_token_does_not_list_other_teams_keys(acme: Tenant, role: str) -> None:
    _, _, key = other_team(acme)
    assert key.pk not in [k["id"] for k in acme.client(role).get(acme.url("keys/")).json()["results"]]
    lowered = api(viewer_token_of(acme, role))
    listed = lowered.get(acme.url("keys/")).json()
    assert "research key" not in str(listed), listed
    assert lowered.get(acme.url(f"keys/{key.pk}/")).status_code == 404


def test_an_org_viewer_still_sees_every_team(acme: Tenant) -> None:
    """The fix narrows members' lowered tokens only: viewers (and admins' viewer tokens) read the whole org."""
    other_team(acme)
    for client in (acme.client("viewer"), api(viewer_token_of(acme, "admin"))):
        body = client.get(acme.url("usage/"), {"group_by": "key"}).json()
        assert body["totals"]["requests"] == 7 and "research key" in str(body), body


# Shared workers: a tenant's evaluation work piles up without bound -------------------------------


def make_evaluator(t: Tenant, judge_route: str = "chat") -> int:
    response = t.client("team_admin").post(project_url(t, "evaluators/"), {
        "name": "helpfulness", "template": "helpfulness", "judge_route": judge_route}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def make_schedule(t: Tenant, evaluator: int) -> EvalSchedule:
    response = t.client("team_admin").post(project_url(t, "schedules/"), {
        "name": "often", "evaluator": evaluator, "interval_seconds": 10, "max_traces": 100_000,
        "concurrency": 64}, format="json")
    assert response.status_code == 201, response.content
    return EvalSchedule.objects.get(pk=response.json()["id"])


def test_beat_does_not_pile_up_runs_of_a_schedule_whose_run_is_in_progress(acme: Tenant, monkeypatch: Any) -> None:
    """A schedule every 10 s over a window that takes longer than that: each beat tick queued one more run of
    the same window (the window only moves on when a run succeeds), each up to 100,000 traces on 64 threads
    of the shared `evals` workers."""
    from evals import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.execute_eval_run, "delay", queued.append)
    schedule = make_schedule(acme, make_evaluator(acme))
    first = tasks.run_schedule(schedule.pk)
    assert first is not None
    for _ in range(5):  # five more ticks while the first run is queued, then running
        assert tasks.run_schedule(schedule.pk) is None
        EvalRun.objects.filter(pk=first).update(status=RunStatus.RUNNING)
    assert EvalRun.objects.filter(schedule=schedule).count() == 1 and queued == [first]
    EvalRun.objects.filter(pk=first).update(status=RunStatus.SUCCEEDED)
    assert tasks.run_schedule(schedule.pk) is not None  # once it is over, the next tick runs


def test_run_now_answers_409_while_the_schedules_run_is_in_progress(acme: Tenant) -> None:
    schedule = make_schedule(acme, make_evaluator(acme))
    client = acme.client("team_admin")
    assert client.post(project_url(acme, f"schedules/{schedule.pk}/run/")).status_code == 202
    again = client.post(project_url(acme, f"schedules/{schedule.pk}/run/"))
    assert again.status_code == 409 and "in progress" in again.json()["detail"], again.content
    assert EvalRun.objects.filter(schedule=schedule).count() == 1


def test_an_organization_cannot_queue_runs_without_bound(acme: Tenant) -> None:
    """Counted per organization: a team admin may create any number of projects."""
    from evals.services.evaluators import MAX_ACTIVE_RUNS

    evaluator = make_evaluator(acme)
    client = acme.client("team_admin")
    since = (timezone.now() - dt.timedelta(days=3650)).isoformat()
    answers = [client.post(project_url(acme, "runs/"), {"evaluator": evaluator, "window_start": since},
                           format="json") for _ in range(MAX_ACTIVE_RUNS + 3)]
    assert [a.status_code for a in answers] == [202] * MAX_ACTIVE_RUNS + [409] * 3, [a.content for a in answers]
    assert "wait for one to finish" in answers[-1].json()["detail"]
    assert EvalRun.objects.filter(project=acme.project).count() == MAX_ACTIVE_RUNS
    created = client.post(acme.url("projects/"), {"name": "acme-another", "team": acme.team.pk}, format="json")
    another = Project.objects.get(pk=created.json()["id"])
    other_evaluator = client.post(project_url(acme, "evaluators/", another), {
        "name": "helpfulness", "template": "helpfulness", "judge_route": "chat"}, format="json").json()["id"]
    refused = client.post(project_url(acme, "runs/", another), {"evaluator": other_evaluator, "window_start": since},
                          format="json")
    assert refused.status_code == 409, refused.content
    EvalRun.objects.filter(project=acme.project).update(status=RunStatus.SUCCEEDED)
    assert client.post(project_url(acme, "runs/"), {"evaluator": evaluator, "window_start": since},
                       format="json").status_code == 202


# A report through a route the project's team may not use -----------------------------------------


def restricted_route(t: Tenant, team: Team, name: str = "premium") -> ModelRoute:
    route = routes.route_create(actor=system_actor(t.org, "tests"), data={"name": name, "deployments": [
        {"credential": None, "model": "gpt-4o", "litellm_params": {"mock_response": "expensive"}}]})
    route.allowed_teams.set([team])
    return route


def test_a_report_cannot_use_a_route_of_another_team(acme: Tenant) -> None:
    """The judge route and a benchmark's routes must be usable by the project's team; the report's route was
    taken as any route of the organization (refused only later, by the gateway, after a 202)."""
    research, _, _ = other_team(acme)
    restricted_route(acme, research)
    evaluator = make_evaluator(acme)
    run = EvalRun.objects.create(project=acme.project, evaluator_version=Evaluator.objects.get(pk=evaluator).current,
                                 status=RunStatus.SUCCEEDED)
    client = acme.client("team_admin")
    answer = client.post(project_url(acme, f"runs/{run.pk}/report/"), {"route": "premium"}, format="json")
    assert answer.status_code == 400, answer.content
    assert "not available to this project's team" in str(answer.json()), answer.content
    assert client.post(project_url(acme, f"runs/{run.pk}/report/"), {"route": "chat"},
                       format="json").status_code == 202
    # the same for the judge route and a benchmark's routes (already refused before)
    refused = client.post(project_url(acme, "evaluators/"), {"name": "j2", "template": "helpfulness",
                                                             "judge_route": "premium"}, format="json")
    assert refused.status_code == 400 and "judge_route" in refused.json(), refused.content


def test_an_organization_cannot_run_benchmarks_without_bound(acme: Tenant) -> None:
    """One run per benchmark at a time, but any number of benchmarks (each up to 64 threads): capped per
    organization."""
    from evals.models import Dataset, DatasetItem
    from evals.services.benchmarks import MAX_ACTIVE_RUNS

    dataset = Dataset.objects.create(project=acme.project, name="qa")
    DatasetItem.objects.create(dataset=dataset, external_id="q1", input="question", expected_output="answer")
    client = acme.client("team_admin")
    answers = []
    for i in range(MAX_ACTIVE_RUNS + 2):
        created = client.post(project_url(acme, "benchmarks/"), {"name": f"b{i}", "dataset": dataset.pk,
                                                                 "routes": ["chat"], "concurrency": 64}, format="json")
        assert created.status_code == 201, created.content
        answers.append(client.post(project_url(acme, f"benchmarks/{created.json()['id']}/run/")))
    assert [a.status_code for a in answers] == [202] * MAX_ACTIVE_RUNS + [409] * 2, [a.content for a in answers]
    assert "wait for one to finish" in answers[-1].json()["detail"]


# A judge prompt that multiplies a trace's text on the shared workers -------------------------------


def test_a_judge_prompt_cannot_blow_up_on_the_workers(acme: Tenant) -> None:
    """2,000 `{{input}}` in a 20,000-character template, each filled with up to 20,000 characters of a trace:
    a 40 MB prompt per trace, built by each of 64 threads of a shared worker (and sent to the gateway)."""
    from evals.judge import MAX_PROMPT_CHARS, render

    prompt = "Grade this. " + "{{input}}" * 2000
    response = acme.client("team_admin").post(project_url(acme, "evaluators/"), {
        "name": "greedy", "judge_route": "chat", "prompt_template": prompt, "score_type": "boolean"},
        format="json")
    assert response.status_code == 400 and "prompt_template" in response.json(), response.content
    # and whatever is stored (evaluators from before the check), the rendered prompt stays bounded
    version = Evaluator.objects.get(pk=make_evaluator(acme)).current
    assert version is not None
    rendered = render(prompt, {}, {"input": "x" * 20_000})
    assert len(rendered) <= MAX_PROMPT_CHARS
    assert render(version.prompt_template, {}, {"input": "hi", "output": "there"}).count("hi") >= 1


# A client-chosen request id hides usage from the portal --------------------------------------------


def served_event(call_id: str, reservation: str) -> dict[str, Any]:
    """The usage event the plugin emits for a served request whose client sent `x-litellm-call-id: <call_id>`
    (LiteLLM takes the header as `litellm_call_id`, up to its length limit, for any client)."""
    import asyncio
    import time

    from gateway.plugin.callbacks import PortalCallbacks

    portal = {"key_id": 1, "key_hash": "h", "org": 1, "team": 1, "project": 1, "owner": "", "route": "chat",
              "group": "g", "scopes": [], "started": time.time(), "reservation": reservation}
    events: list[dict[str, Any]] = []

    async def settle(_portal: Any, _cost: float, _tokens: int, _completion: int, event: dict[str, Any]) -> None:
        events.append(event)

    callbacks = PortalCallbacks()
    callbacks.settle = settle  # type: ignore[method-assign]
    kwargs = {"litellm_call_id": call_id, "standard_logging_object": {}, "response_cost": 0.5,
              "litellm_params": {"metadata": {"user_api_key_metadata": {"portal": portal}}}}
    asyncio.run(callbacks.async_log_success_event(kwargs, None, None, None))
    return events[0]


def test_usage_events_are_named_by_the_gateway_not_by_the_client() -> None:
    """The usage consumer stores each request id once (UsageRecord.request_id is unique, across all
    organizations): a client that sends the same `x-litellm-call-id` on every request is charged in the
    gateway's counters but recorded once in the portal (usage API, dashboards, the rollups the counters are
    rebuilt from when a budget changes); and a request id another tenant's client chose is taken."""
    first, second = served_event("same-every-time", "r1"), served_event("same-every-time", "r2")
    assert first["request_id"] != second["request_id"]


# Web UI: another organization's objects by id, admin pages, CSRF (checked: safe) ---------------------


def web_login(t: Tenant, role: str, *, csrf: bool = False) -> Any:
    from django.test import Client

    client = Client(enforce_csrf_checks=csrf)
    user = t.users[role]
    user.set_password("pw-for-tests-1234")
    user.save()
    assert client.login(username=user.username, password="pw-for-tests-1234")
    return client


def test_web_pages_answer_404_for_another_organizations_objects(acme: Tenant, globex: Tenant) -> None:
    owner = web_login(acme, "owner")
    run = EvalRun.objects.create(project=globex.project, status=RunStatus.SUCCEEDED,
                                 evaluator_version=Evaluator.objects.get(pk=make_evaluator(globex)).current)
    for path in (f"projects/{globex.project.pk}/", f"projects/{acme.project.pk}/runs/{run.pk}/",
                 f"projects/{globex.project.pk}/runs/{run.pk}/"):
        assert owner.get(f"/orgs/{acme.org.slug}/{path}").status_code == 404, path
    for verb in ("revoke", "block", "rotate"):
        assert owner.post(f"/orgs/{acme.org.slug}/keys/{globex.key.pk}/{verb}/").status_code == 404
    globex.key.refresh_from_db()
    assert globex.key.status == "active"
    page = owner.get(f"/orgs/{acme.org.slug}/keys/").content.decode()
    assert not any(marker in page for marker in globex.foreign_markers()), "globex in acme's keys page"


def test_web_and_session_api_writes_need_the_csrf_token(acme: Tenant) -> None:
    owner = web_login(acme, "owner", csrf=True)
    assert owner.post(f"/orgs/{acme.org.slug}/keys/{acme.key.pk}/revoke/").status_code == 403
    issued = owner.post(f"/api/v1/orgs/{acme.org.slug}/keys/", {"name": "csrf", "team": acme.team.pk,
                                                                "project": acme.project.pk},
                        content_type="application/json")
    assert issued.status_code == 403 and "CSRF" in issued.json()["detail"], issued.content
    acme.key.refresh_from_db()
    assert acme.key.status == "active" and not VirtualKey.objects.filter(name="csrf").exists()


# Schedule filters of the wrong type crash the shared worker mid-run --------------------------------


@pytest.mark.parametrize("filters", [{"metadata": "x"}, {"tags": {"a": 1}}, {"user_id": {"$ne": 1}},
                                     {"environment": "prod"}, {"name": ["x"]}, {"metadata": {"k": {"deep": 1}}}])
def test_schedule_filters_of_the_wrong_type_are_refused(acme: Tenant, filters: dict[str, Any]) -> None:
    evaluator = make_evaluator(acme)
    response = acme.client("team_admin").post(project_url(acme, "schedules/"), {
        "name": "typed", "evaluator": evaluator, "interval_seconds": 60, "filters": filters}, format="json")
    assert response.status_code == 400 and "filters" in response.json(), response.content
    good = {"name": "chat", "tags": ["prod"], "user_id": "u1", "environment": ["production"],
            "metadata": {"tier": "gold", "n": 3}}
    assert acme.client("team_admin").post(project_url(acme, "schedules/"), {
        "name": "typed", "evaluator": evaluator, "interval_seconds": 60, "filters": good},
        format="json").status_code == 201


def test_a_run_that_crashes_ends_failed_instead_of_running_for_hours(acme: Tenant, langfuse_standin: Any) -> None:
    """A schedule saved before its filters were checked (or any bug on the worker): the task raised, the run
    stayed `running` for two hours, holding one of the project's run slots and its schedule's."""
    from evals.services.runs import eval_run_execute
    from tests.factories import connect_langfuse

    connect_langfuse(acme, langfuse_standin)
    schedule = make_schedule(acme, make_evaluator(acme))
    EvalSchedule.objects.filter(pk=schedule.pk).update(filters={"metadata": "x"})
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 3, start=timezone.now() - dt.timedelta(minutes=30))
    run = EvalRun.objects.create(project=acme.project, schedule=schedule, status=RunStatus.QUEUED,
                                 evaluator_version=schedule.evaluator.current,
                                 window_start=timezone.now() - dt.timedelta(hours=1), window_end=timezone.now())
    with pytest.raises(AttributeError):
        eval_run_execute(run.pk)  # still raised, for the worker's log and error tracking
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None, run.status
    assert run.error == "The run stopped on an unexpected error (it is logged); nothing more was scored."


@pytest.mark.parametrize(("content", "said"), [
    ('{"groups": [{"pattern": "p", "suggestion": "s", "trace_ids": 7}]}', "no failure pattern"),
    ("Sure! Here are the patterns I found.", "not the report's JSON: pick a route"),  # not json's own words
    ("[1, 2]", "JSON but not the report's object"),
])
def test_a_report_whose_answer_has_the_wrong_shape_fails_instead_of_running_forever(
        acme: Tenant, monkeypatch: Any, content: str, said: str) -> None:
    """The report's model reads the traces' text (the tenant's users write it): an answer whose trace_ids
    is a number raised on the worker and left the report `running` for good (no reaper looks at reports)."""
    from evals.gateway_client import Completion
    from evals.models import EvalReport, EvalScore
    from evals.services import reports

    class Model:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def chat(self, *args: Any, **kwargs: Any) -> Completion:
            return Completion(content, None, 0.01, 5.0, "t", 1, 1)

    monkeypatch.setattr(reports, "GatewayClient", Model)
    monkeypatch.setattr(reports, "service_key", lambda project: "sk-test")
    run = EvalRun.objects.create(project=acme.project, status=RunStatus.SUCCEEDED,
                                 evaluator_version=Evaluator.objects.get(pk=make_evaluator(acme)).current)
    EvalScore.objects.create(project=acme.project, evaluator_version=run.evaluator_version, run=run,
                             trace_id="t1", status="scored", value=1.0, langfuse_score_id="s1")
    report = EvalReport.objects.create(run=run, route=acme.route)
    reports.generate(report.pk)
    report.refresh_from_db()
    assert report.status == RunStatus.FAILED and said in report.error, (report.status, report.error)
    assert "Expecting value" not in report.error


# Foreign ids in request bodies, other teams' projects, key-scoped tokens (checked: safe) -----------


def test_another_organizations_ids_in_evaluation_bodies_are_unknown(acme: Tenant, globex: Tenant,
                                                                   langfuse_standin: Any) -> None:
    """Every id of globex's objects, in the bodies of acme's evaluation endpoints: refused with the same
    answer as an id that does not exist, nothing created, globex's names never echoed."""
    from tests.factories import make_evals

    g = make_evals(globex, langfuse_standin)
    mine = make_evaluator(acme)
    client = acme.client("owner")
    attempts = [
        ("schedules/", {"name": "s", "evaluator": g.evaluator, "interval_seconds": 60}, "evaluator"),
        ("runs/", {"evaluator": g.evaluator, "window_start": "2026-01-01T00:00:00Z"}, "evaluator"),
        ("benchmarks/", {"name": "b", "dataset": g.dataset, "routes": ["chat"]}, "dataset"),
        ("benchmarks/", {"name": "b", "dataset": g.dataset, "routes": ["chat"], "evaluators": [g.evaluator]},
         "evaluators"),
        (f"evaluators/{mine}/calibrations/", {"dataset": g.dataset}, "dataset"),
        (f"evaluators/{mine}/labels/", {"item": g.item, "label": "4"}, "item"),
    ]
    for path, body, field in attempts:
        foreign = client.post(project_url(acme, path), body, format="json")
        missing = client.post(project_url(acme, path), json_with_missing_ids(body, g), format="json")
        assert foreign.status_code == missing.status_code == 400, (path, foreign.content)
        assert field in foreign.json(), (path, foreign.content)
        assert str(foreign.json()[field]).replace(str(getattr(g, field.rstrip("s"), "")), "ID") == \
            str(missing.json()[field]).replace("999999", "ID"), (path, foreign.content, missing.content)
        assert not any(m in foreign.content.decode() for m in globex.foreign_markers()), foreign.content
    # globex's objects under acme's URL, and acme's URL with globex's project
    for path in (f"evaluators/{g.evaluator}/", f"schedules/{g.schedule}/", f"runs/{g.run}/report/",
                 f"datasets/{g.dataset}/items/", f"benchmarks/{g.benchmark}/runs/",
                 f"evaluators/{g.evaluator}/calibrations/{g.calibration}/"):
        assert client.get(project_url(acme, path)).status_code == 404, path
        assert client.get(project_url(acme, path, globex.project)).status_code == 404, path


def json_with_missing_ids(body: dict[str, Any], g: Any) -> dict[str, Any]:
    ids = {g.evaluator, g.dataset, g.item}

    def missing(v: Any) -> Any:
        if isinstance(v, list):
            return [999999 if x in ids else x for x in v]
        return 999999 if isinstance(v, int) and v in ids else v

    return {k: missing(v) for k, v in body.items()}


def test_a_team_admin_cannot_write_to_another_teams_project(acme: Tenant) -> None:
    _, lab, _ = other_team(acme)
    evaluator = Evaluator.objects.create(project=lab, name="lab-judge")
    from evals.models import Dataset

    dataset = Dataset.objects.create(project=lab, name="lab-qa")
    client = acme.client("team_admin")
    writes = [("post", "evaluators/", {"name": "x", "template": "helpfulness", "judge_route": "chat"}),
              ("patch", f"evaluators/{evaluator.pk}/", {"name": "renamed"}),
              ("post", "schedules/", {"name": "s", "evaluator": evaluator.pk, "interval_seconds": 60}),
              ("post", "runs/", {"evaluator": evaluator.pk, "window_start": "2026-01-01T00:00:00Z"}),
              ("post", "datasets/", {"name": "d"}), ("post", "benchmarks/", {"name": "b", "dataset": dataset.pk, "routes": ["chat"]}),
              ("post", f"datasets/{dataset.pk}/items/", {"input": "q"}),
              ("delete", f"datasets/{dataset.pk}/", None)]
    for method, path, body in writes:
        answer = getattr(client, method)(project_url(acme, path, lab), body, format="json")
        assert answer.status_code == 403, (path, answer.content)
    assert Evaluator.objects.filter(project=lab).count() == 1 and not EvalRun.objects.filter(project=lab).exists()


def test_a_key_scoped_token_only_manages_keys(acme: Tenant) -> None:
    created = acme.client("owner").post(acme.url("tokens/"), {"name": "ci", "role": "owner", "scope": "keys"},
                                        format="json")
    assert created.status_code == 201, created.content
    keys_only = api(created.json()["token"])
    assert keys_only.get(acme.url("keys/")).status_code == 200
    for path in ("usage/", "audit-log/", "members/", "credentials/", "tokens/",
                 f"projects/{acme.project.pk}/evaluators/", f"projects/{acme.project.pk}/datasets/"):
        assert keys_only.get(acme.url(path)).status_code == 403, path
    assert keys_only.post(acme.url("tokens/"), {"name": "x", "role": "owner"}, format="json").status_code == 403
    assert keys_only.post(project_url(acme, "datasets/"), {"name": "d"}, format="json").status_code == 403


def test_judge_prompts_are_not_templates_of_python_or_django(acme: Tenant) -> None:
    """A judge prompt is filled by name from the trace only: no attribute access, no settings, no format
    fields (checked: safe; this keeps it so)."""
    from django.conf import settings

    from evals.judge import render
    from evals.services.runs import trace_source

    prompt = ("{{ settings.SECRET_KEY }} {{input.__class__}} {{ metadata.__init__.__globals__ }} "
              "{input.__class__.__mro__} {0} %(x)s {% debug %} {{output}}")
    trace = {"id": "t1", "input": {"q": "hi"}, "output": "ok", "metadata": {"a": 1}}
    rendered = render(prompt, {"output": "metadata.__class__"}, trace_source(trace))
    assert settings.SECRET_KEY not in rendered and "class" not in rendered.replace("__class__.__mro__", "")
    assert rendered.count("(none)") == 4, rendered  # settings, __class__, __init__, the mapped output
    assert "{input.__class__.__mro__} {0} %(x)s {% debug %}" in rendered
    response = acme.client("team_admin").post(project_url(acme, "evaluators/"), {
        "name": "sneaky", "judge_route": "chat", "prompt_template": prompt, "score_type": "boolean"}, format="json")
    assert response.status_code == 201  # accepted, and harmless: the text above is what the judge gets


# Provisioning adopts another team's Langfuse project by name ---------------------------------------


def test_provisioning_never_adopts_another_projects_langfuse_project(acme: Tenant, langfuse_standin: Any) -> None:
    """`provision` looks for a Langfuse project named `<org>-<project name>` and, if there is one, makes a key
    for it. A project's name is free again once it is renamed (or deleted); a team admin of another team who
    names a project of their own like it, and provisions, is handed the first project's Langfuse, traces and
    all."""
    from tests.factories import connect_langfuse

    connect_langfuse(acme, langfuse_standin)  # the organization key, as an org admin sets it
    _, lab, _ = other_team(acme)
    admin = acme.client("admin")
    first = admin.post(project_url(acme, "langfuse/provision/", lab))
    assert first.status_code == 201, first.content
    lab_langfuse = first.json()["langfuse_project_id"]
    langfuse_standin.seed_traces(lab_langfuse, 2, metadata={"secret": "lab data"})
    old_name = lab.name
    assert admin.patch(acme.url(f"projects/{lab.pk}/"), {"name": old_name + "-v2"},
                       format="json").status_code == 200
    team_admin = acme.client("team_admin")
    created = team_admin.post(acme.url("projects/"), {"name": old_name, "team": acme.team.pk}, format="json")
    assert created.status_code == 201, created.content
    mine = Project.objects.get(pk=created.json()["id"])
    second = team_admin.post(project_url(acme, "langfuse/provision/", mine))
    assert second.status_code in (201, 400, 409), second.content
    if second.status_code == 201:
        assert second.json()["langfuse_project_id"] != lab_langfuse, "handed the lab's Langfuse project"


# A Langfuse of the tenant's choosing lists the same items forever -----------------------------------


@pytest.mark.parametrize("item", [{"id": "same", "input": "q"}, {"id": "gone", "input": "q", "status": "ARCHIVED"},
                                  {"id": "bad id with spaces?", "input": "q"}, "not an object"])
def test_pulling_a_dataset_that_never_ends_stops_at_the_limit(acme: Tenant, langfuse_standin: Any,
                                                             monkeypatch: Any, item: Any) -> None:
    """The Langfuse host is the tenant's choice (a self-hosted one is legitimate). Its dataset-items pages
    repeat one id, or only archived or invalid items, or not even objects: the pull counted distinct valid
    items only, so the request read pages for ever (or collected errors without bound, or answered 500)."""
    from evals.langfuse_client import LangfuseClient
    from evals.services.datasets import MAX_DATASET_ITEMS
    from tests.factories import connect_langfuse

    connect_langfuse(acme, langfuse_standin)
    read = 0

    def endless(self: Any, name: str) -> Any:
        nonlocal read
        while read < 3 * MAX_DATASET_ITEMS:  # instead of for ever: the test must end
            read += 1
            yield dict(item) if isinstance(item, dict) else item
        raise AssertionError("still reading the hostile server's pages")

    monkeypatch.setattr(LangfuseClient, "dataset_items", endless)
    monkeypatch.setattr(LangfuseClient, "dataset", lambda self, name: {"name": name})
    client = acme.client("team_admin")
    dataset = client.post(project_url(acme, "datasets/"), {"name": "mirror"}, format="json").json()
    answer = client.post(project_url(acme, f"datasets/{dataset['id']}/pull/"), {}, format="json")
    assert answer.status_code == 400, answer.content[:300]
    assert read <= MAX_DATASET_ITEMS + 1 and len(answer.content) < 300_000, (read, len(answer.content))


def test_a_run_stops_reading_a_langfuse_whose_traces_never_end(acme: Tenant, langfuse_standin: Any,
                                                               monkeypatch: Any) -> None:
    """Traces that never match (the portal's own tag) or are never sampled were read without any bound: a
    host of the tenant's choosing that lists them for ever held a shared worker until the task's time limit
    (55 minutes), for every run of every schedule."""
    from evals.langfuse_client import LangfuseClient
    from evals.services.runs import SCAN_PER_TRACE, eval_run_execute
    from tests.factories import connect_langfuse

    connect_langfuse(acme, langfuse_standin)
    schedule = make_schedule(acme, make_evaluator(acme))
    EvalSchedule.objects.filter(pk=schedule.pk).update(max_traces=50)
    read = 0

    def endless(self: Any, **kwargs: Any) -> Any:
        nonlocal read
        while read < 3 * 50 * SCAN_PER_TRACE:  # instead of for ever: the test must end
            read += 1
            yield {"id": f"t{read}", "timestamp": "2026-12-01T00:00:00Z", "tags": ["portal-evaluation"]}
        raise AssertionError("still reading the hostile server's traces")

    monkeypatch.setattr(LangfuseClient, "traces", endless)
    run = EvalRun.objects.create(project=acme.project, schedule=schedule, status=RunStatus.QUEUED,
                                 evaluator_version=schedule.evaluator.current,
                                 window_start=timezone.now() - dt.timedelta(hours=1), window_end=timezone.now())
    eval_run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and "stopped after reading 1000 traces" in run.stop_reason, (
        run.status, run.stop_reason, run.error)
    assert read <= 50 * SCAN_PER_TRACE + 1


def test_a_benchmark_reads_a_bounded_listing_of_the_langfuse_dataset(acme: Tenant) -> None:
    """Before a benchmark records its runs it lists the Langfuse dataset's items: without a bound, a host whose
    pages never end (or list no objects) held the worker until the time limit, or crashed the run."""
    from evals.models import Dataset, DatasetItem
    from evals.services.benchmarks import push_dataset
    from evals.services.datasets import MAX_DATASET_ITEMS

    dataset = Dataset.objects.create(project=acme.project, name="qa")
    items = [DatasetItem.objects.create(dataset=dataset, external_id="q1", input="question")]
    upserts: list[dict[str, Any]] = []

    class Hostile:
        read = 0

        def dataset(self, name: str) -> dict[str, Any]:
            return {"name": name}

        def dataset_items(self, name: str) -> Any:
            while self.read < 3 * MAX_DATASET_ITEMS:
                self.read += 1
                yield "not an object" if self.read % 2 else {"id": f"x{self.read}"}
            raise AssertionError("still reading the hostile server's pages")

        def upsert_dataset_item(self, body: dict[str, Any]) -> None:
            upserts.append(body)

    hostile = Hostile()
    assert push_dataset(hostile, dataset, items) == "qa"  # type: ignore[arg-type]
    assert hostile.read <= MAX_DATASET_ITEMS + 1 and [u["id"] for u in upserts] == ["q1"]


# The Langfuse client trusts a host of the tenant's choosing -----------------------------------------


def hostile_langfuse(answer: Any) -> Any:
    """A Langfuse client whose far side answers every request with `answer(n)` (n: the request's number)."""
    import httpx

    from evals.langfuse_client import LangfuseClient

    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] > 5000:
            raise AssertionError("still requesting pages from the hostile host")
        return answer(calls["n"])

    client = LangfuseClient("https://93.184.216.34", "pk", "sk", transport=httpx.MockTransport(handler),
                            max_retries=0)
    return client, calls


def test_the_langfuse_client_pages_a_bounded_number_of_times() -> None:
    import httpx

    from evals.langfuse_client import LangfuseError

    client, calls = hostile_langfuse(lambda n: httpx.Response(200, json={
        "data": [{"id": f"c{n}", "name": "other"}], "meta": {"totalPages": 10**9, "cursor": f"next{n}"}}))
    with pytest.raises(LangfuseError):
        client.score_config("helpfulness", "NUMERIC")  # score configs, before every evaluation run
    assert calls["n"] <= 1000


@pytest.mark.parametrize("body", [b"[1, 2]", b"[" * 100_000 + b"]" * 100_000,
                                  b'{"data": [], "x": "' + b"x" * (40 * 1024 * 1024) + b'"}'])
def test_the_langfuse_client_refuses_answers_of_the_wrong_shape_or_size(body: bytes) -> None:
    """A list where an object is expected raised AttributeError (a 500 in the request, a crash on the
    worker), deep nesting RecursionError, and a 40 MB answer was read into memory whole."""
    import httpx

    from evals.langfuse_client import LangfuseError

    client, _ = hostile_langfuse(lambda n: httpx.Response(200, content=body))
    with pytest.raises(LangfuseError):
        list(client.score_configs())
