"""Evaluation runs: sampling, filters, claims, stuck runs; and scheduled runs that never skip a trace
(a transient judge failure is retried by the next run, late traces are scored), with a stub in the
judge's place and the Langfuse stand-in."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.utils import timezone

from evals.gateway_client import GatewayCallError
from evals.judge import Judgment
from evals.models import EvalRun, EvalSchedule, EvalScore, Evaluator, EvaluatorVersion
from evals.services import judging
from evals.services.runs import claim, eval_run_execute, fail_stuck_runs, matches, sampled
from evals.templates import template
from tests.factories import Tenant


def make_run(t: Tenant, status: str = "running") -> EvalRun:
    ev = Evaluator.objects.get_or_create(project=t.project, name="helpfulness")[0]
    definition = {k: v for k, v in template("helpfulness").items() if k != "description"}
    version = EvaluatorVersion.objects.get_or_create(evaluator=ev, version=1,
                                                     defaults={"judge_route": t.route, **definition})[0]
    return EvalRun.objects.create(project=t.project, evaluator_version=version, status=status)


def test_sampling_is_deterministic_by_trace_id_and_close_to_the_rate() -> None:
    ids = [f"trace-{i}" for i in range(10_000)]
    first = [t for t in ids if sampled(t, 0.25)]
    assert first == [t for t in ids if sampled(t, 0.25)]
    assert 2300 < len(first) < 2700
    assert set(first) <= {t for t in ids if sampled(t, 0.5)}  # a larger rate keeps the same traces


def test_filters_never_match_the_portals_own_calls() -> None:
    assert matches({"tags": ["x"], "metadata": {"env": "prod"}}, {"metadata": {"env": "prod"}})
    assert not matches({"tags": ["x"], "metadata": {"env": "dev"}}, {"metadata": {"env": "prod"}})
    assert not matches({"tags": ["portal-evaluation"], "metadata": {}}, {})


@pytest.mark.django_db
def test_a_trace_is_claimed_by_one_run_at_a_time(acme: Tenant) -> None:
    a, b = make_run(acme), make_run(acme)
    row = claim(a, "t1")
    assert row is not None and row.run == a
    assert claim(b, "t1") is None  # a running run holds it
    assert claim(a, "t1") is not None  # a retry of the same run takes it again
    row.status, row.value = "scored", 4.0
    row.pushed_at = timezone.now()
    row.save()
    assert claim(b, "t1") is None  # scored and pushed: done for good
    EvalRun.objects.filter(pk=a.pk).update(status="failed")
    row.status, row.pushed_at = "claimed", None
    row.save()
    taken = claim(b, "t1")
    assert taken is not None and taken.run == b  # the claim of a finished run is abandoned


@pytest.mark.django_db
def test_runs_whose_worker_died_are_failed_and_release_their_claims(acme: Tenant) -> None:
    old, fresh = make_run(acme), make_run(acme)
    claim(old, "t-old")
    EvalRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(hours=3))
    assert fail_stuck_runs() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == "failed" and "worker was lost" in old.error and fresh.status == "running"
    assert not EvalScore.objects.filter(trace_id="t-old").exists()


# A scheduled run never skips a trace ------------------------------------


def scheduled(t: Tenant, langfuse: Any) -> EvalSchedule:
    from tests.factories import connect_langfuse

    connect_langfuse(t, langfuse)
    response = t.client("team_admin").post(t.url(f"projects/{t.project.pk}/schedules/"), {
        "name": "often", "evaluator": make_run(t).evaluator_version.evaluator_id, "interval_seconds": 60,
        "initial_lookback_hours": 1}, format="json")
    assert response.status_code == 201, response.content
    EvalRun.objects.all().delete()
    return EvalSchedule.objects.get(pk=response.json()["id"])


def tick(schedule: EvalSchedule, monkeypatch: Any) -> EvalRun:
    """What beat and the worker do: the schedule's next run, executed."""
    from evals import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.execute_eval_run, "delay", queued.append)
    tasks.run_schedule(schedule.pk)
    assert len(queued) == 1
    eval_run_execute(queued[0])
    return EvalRun.objects.get(pk=queued[0])


class Judge:
    """In the gateway's place: scores 4, except for the traces in `down` (a time-out)."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.calls: list[str] = []

    def __call__(self, client: Any, *, route: str, prompt: str, **kwargs: Any) -> Judgment:
        trace_id = prompt  # see `judge_stub`
        self.calls.append(trace_id)
        if trace_id in self.down:
            raise GatewayCallError("The gateway did not answer (APITimeoutError).")
        return Judgment(4.0, "", "fine", 0.0001, 5.0, False, "j" * 32)


@pytest.fixture
def judge_stub(monkeypatch: Any) -> Judge:
    stub = Judge()
    monkeypatch.setattr(judging, "judge", stub)
    monkeypatch.setattr(judging, "render", lambda template, variables, source: source["trace_id"])
    return stub


def seed(langfuse: Any, t: Tenant, judge: Judge, n: int, start: dt.datetime) -> list[str]:
    ids: list[str] = langfuse.seed_traces(f"lf-{t.org.slug}", n, start=start, interval=dt.timedelta(milliseconds=10))
    return ids


def exactly_once(langfuse: Any, t: Tenant, ids: list[str]) -> None:
    rows = EvalScore.objects.filter(trace_id__in=ids)
    assert sorted(rows.values_list("trace_id", flat=True)) == sorted(ids)  # one row per (trace, version)
    assert set(rows.values_list("status", flat=True)) == {"scored"}
    pushed = [s.trace_id for s in langfuse.projects[f"lf-{t.org.slug}"].scores.values()]
    assert sorted(pushed) == sorted(ids)  # one Langfuse score per trace


@pytest.mark.django_db
def test_a_trace_whose_judging_failed_transiently_is_scored_by_the_next_scheduled_run(
        acme: Tenant, langfuse_standin: Any, judge_stub: Judge, monkeypatch: Any, settings: Any) -> None:
    settings.EVALS_INGESTION_DELAY_SECONDS = 0
    schedule = scheduled(acme, langfuse_standin)
    ids = seed(langfuse_standin, acme, judge_stub, 4, timezone.now() - dt.timedelta(minutes=10))
    judge_stub.down = {ids[1]}
    first = tick(schedule, monkeypatch)
    assert first.status == "succeeded" and (first.scored, first.failed) == (3, 1), first.stop_reason
    left = EvalScore.objects.get(trace_id=ids[1])
    assert left.status == "retry" and left.attempts == 1 and "did not answer" in left.error
    judge_stub.down = set()
    second = tick(schedule, monkeypatch)  # its window starts after the trace: it is retried all the same
    assert second.window_start is not None and second.window_start > timezone.now() - dt.timedelta(minutes=1)
    assert second.status == "succeeded" and second.scored == 1, second.stop_reason
    assert EvalScore.objects.get(trace_id=ids[1]).run == second
    assert judge_stub.calls.count(ids[1]) == 2 and judge_stub.calls.count(ids[0]) == 1
    exactly_once(langfuse_standin, acme, ids)
    third = tick(schedule, monkeypatch)  # nothing left: nothing judged again
    assert third.scored == 0 and len(judge_stub.calls) == 5


@pytest.mark.django_db
def test_a_trace_ingested_late_inside_the_delay_is_scored_by_a_later_scheduled_run(
        acme: Tenant, langfuse_standin: Any, judge_stub: Judge, monkeypatch: Any, settings: Any) -> None:
    settings.EVALS_INGESTION_DELAY_SECONDS = 2
    schedule = scheduled(acme, langfuse_standin)
    early = seed(langfuse_standin, acme, judge_stub, 3, timezone.now() - dt.timedelta(minutes=10))
    first = tick(schedule, monkeypatch)
    assert first.status == "succeeded" and first.scored == 3
    assert first.window_end is not None and first.window_end < first.created_at - dt.timedelta(seconds=1.5)
    # Langfuse ingests a trace of one second ago only now: the first run's window had stopped short of it
    late = seed(langfuse_standin, acme, judge_stub, 1, timezone.now() - dt.timedelta(seconds=1))
    time.sleep(2.5)
    second = tick(schedule, monkeypatch)
    assert second.status == "succeeded" and second.scored == 1 and second.window_start == first.window_end
    exactly_once(langfuse_standin, acme, early + late)
