"""A schedule fired by Celery beat's database scheduler, its alerts, and the
LLM-written report of a run."""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from evals.models import EvalRun, EvalSchedule
from tests.e2e.conftest import Stack
from tests.e2e.helpers import until
from tests.e2e.procs import LOGS, PYTHON, Proc
from tests.e2e.test_alerts import Hooks
from tests.e2e.test_evals import connect_langfuse, evaluator, finished, judge_route, project_url
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def beat(stack: Stack, tmp_path: Any) -> Iterator[Proc]:
    """Beat with the portal's schedule, seeded as a deployment seeds it."""
    call_command("seed_beat", stdout=io.StringIO())
    proc = Proc("beat", [PYTHON, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                         "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                         "--max-interval", "2", "--pidfile", str(tmp_path / "beat.pid")], stack.env).start()
    yield proc
    proc.stop(signal.SIGTERM)


def test_beat_fires_a_schedule_and_its_alerts_follow_the_scores(stack: Stack, acme: Tenant, beat: Proc,
                                                                settings: Any) -> None:
    log_start = (LOGS / "beat.log").stat().st_size if (LOGS / "beat.log").exists() else 0
    hooks = Hooks()
    acme.client("owner").patch(acme.url(), {"alert_webhook_url": hooks.url}, format="json")
    lf = connect_langfuse(acme, stack)
    stack.langfuse.seed_traces(lf, 6, start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30), name="chat")
    judge_route(acme, "judge", '{"reasoning": "fine", "score": 4}')
    ev = evaluator(acme, "judge")
    response = acme.client("owner").post(project_url(acme, "schedules/"), {
        "name": "every 10 s", "evaluator": ev["id"], "interval_seconds": 10, "initial_lookback_hours": 2,
        "alert_below": 4.5, "alert_drop": 1.0, "filters": {"name": "chat"}}, format="json")
    assert response.status_code == 201, response.content
    schedule = EvalSchedule.objects.get(pk=response.json()["id"])
    assert schedule.periodic_task is not None and schedule.periodic_task.task == "evals.tasks.run_schedule"

    until(lambda: EvalRun.objects.filter(schedule=schedule, status="succeeded").exists(), 60, 0.5)
    first = EvalRun.objects.filter(schedule=schedule, status="succeeded").earliest("created_at")
    assert first.scored == 6 and first.mean_score == 4.0
    as_api = acme.client("viewer").get(project_url(acme, f"runs/{first.pk}/")).json()
    assert as_api["status"] == "succeeded" and as_api["schedule"] == schedule.pk, as_api
    print("\nscheduled run as the API returns it:\n" + json.dumps(as_api, indent=2))  # shown with -s
    schedule.refresh_from_db()
    assert schedule.last_window_end == first.window_end  # the next run continues from here
    until(lambda: any(h["kind"] == "evaluation" for h in hooks.received), 10, 0.2)
    below = next(h for h in hooks.received if h["kind"] == "evaluation")
    assert below["schedule"] == "every 10 s" and "below 4.5" in below["reasons"][0]

    # the judge turns harsh; new traces come in; the next run's mean drops by 2
    assert acme.client("owner").patch(project_url(acme, f"schedules/{schedule.pk}/"), {"enabled": False},
                                      format="json").status_code == 200
    time.sleep(1)
    admin = acme.client("admin")
    route_id = admin.get(acme.url("routes/"), {"name": "judge"}).json()["results"][0]["id"]
    admin.patch(acme.url(f"routes/{route_id}/"), {"deployments": [{"model": "m", "litellm_params": {
        "mock_response": '{"reasoning": "weak", "score": 2}'}}]}, format="json")
    stack.langfuse.seed_traces(lf, 3, start=dt.datetime.now(dt.UTC), interval=dt.timedelta(milliseconds=1),
                               name="chat")
    hooks.received.clear()
    settings.EVALS_INGESTION_DELAY_SECONDS = 0  # the traces above came in just now (late traces: tests/evals/test_runs.py)
    later = acme.client("owner").post(project_url(acme, f"schedules/{schedule.pk}/run/")).json()
    record = finished(acme, later["id"])
    assert record["scored"] == 3 and record["mean_score"] == 2.0 and record["already_scored"] == 0, record
    until(lambda: len(hooks.received) >= 1, 10, 0.2)
    assert any("dropped from 4.000 to 2.000" in r for r in hooks.received[0]["reasons"])
    hooks.server.shutdown()
    with open(LOGS / "beat.log", "rb") as log:  # beat ran the seeded housekeeping too
        log.seek(log_start)
        assert b"Sending due task gateway: re-push state Redis lost" in log.read()


def test_a_report_groups_the_weakest_traces_and_links_each_claim(stack: Stack, acme: Tenant) -> None:
    lf = connect_langfuse(acme, stack)
    ids = stack.langfuse.seed_traces(lf, 5, start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    judge_route(acme, "judge", '{"reasoning": "misses the refund policy", "score": 2}')
    answer = {"summary": "Answers ignore the refund policy.", "groups": [
        {"pattern": "Ignores policy", "explanation": "The refund window is never mentioned.",
         "suggestion": "Add the refund policy to the system prompt.", "trace_ids": [ids[0], ids[3], "not-a-trace"]},
        {"pattern": "Invented", "explanation": "x", "suggestion": "y", "trace_ids": ["made-up"]}]}
    judge_route(acme, "reporter", json.dumps(answer))
    ev = evaluator(acme, "judge")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    run = acme.client("owner").post(project_url(acme, "runs/"), {"evaluator": ev["id"], "window_start": since},
                                    format="json").json()
    assert finished(acme, run["id"])["scored"] == 5
    started = acme.client("owner").post(project_url(acme, f"runs/{run['id']}/report/"), {"route": "reporter"},
                                        format="json")
    assert started.status_code == 202, started.content

    def ready() -> bool:
        return acme.client("viewer").get(project_url(acme, f"runs/{run['id']}/report/")).json()["status"] in (
            "succeeded", "failed")

    until(ready, 30, 0.2)
    report = acme.client("viewer").get(project_url(acme, f"runs/{run['id']}/report/")).json()
    assert report["status"] == "succeeded", report
    assert [g["pattern"] for g in report["groups"]] == ["Ignores policy"]  # the group without evidence is dropped
    assert report["groups"][0]["trace_ids"] == [ids[0], ids[3]]
    assert f"/traces/{ids[0]})" in report["content"] and "Add the refund policy" in report["content"]
