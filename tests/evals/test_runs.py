"""Pieces of evaluation runs that need no gateway: sampling, filters, claims, stuck runs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from evals.models import EvalRun, EvalScore, Evaluator, EvaluatorVersion
from evals.services.runs import claim, fail_stuck_runs, matches, sampled
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
