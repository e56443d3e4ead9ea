"""The run lifecycle every kind of run shares (evals/lifecycle.py): the claim,
the limits, and the one place that gives a run its final state."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest

from evals.lifecycle import Execution, Limit
from evals.models import EvalRun
from tests.evals.test_runs import make_run
from tests.factories import Tenant

pytestmark = pytest.mark.django_db


class Counting(Execution[int, int, int]):
    """Doubles numbers on the pool; `limits` and `boom` as a test sets them."""

    model = EvalRun
    extra: list[Limit] = []
    boom: int | None = None

    def __init__(self, run: EvalRun) -> None:
        self.recorded: list[int] = []
        super().__init__(run)

    def limits(self) -> list[Limit]:
        return [*super().limits(), *self.extra]

    def units(self) -> range:
        return range(10)

    def take(self, unit: int) -> Any:
        if unit == self.boom:
            raise AttributeError("a bug")
        return unit, lambda x: 2 * x, (unit,)

    def record(self, context: int, future: Future[int]) -> None:
        self.recorded.append(future.result())
        self.run.scored += 1


def test_a_run_is_claimed_once_and_succeeds(acme: Tenant) -> None:
    run = make_run(acme, status="queued")
    done = Counting.handle(run.pk)
    assert done is not None and done.status == "succeeded" and done.processed == done.scored == 10
    assert done.finished_at is not None and done.stop_reason == ""
    assert Counting.handle(run.pk) is None  # finished: never run again


def test_limits_stop_a_run_partial_or_done(acme: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(Counting, "extra", [Limit("count", 4, "counted enough", done=True)])
    capped = Counting.handle(make_run(acme, status="queued").pk)
    assert capped is not None and (capped.status, capped.stop_reason, capped.processed) == (
        "succeeded", "counted enough", 4)
    monkeypatch.setattr(Counting, "extra", [Limit("seconds", 0, "out of time")])
    timed = Counting.handle(make_run(acme, status="queued").pk)
    assert timed is not None and (timed.status, timed.stop_reason, timed.error) == ("failed", "out of time",
                                                                                   "out of time")


def test_an_unexpected_error_fails_the_run_and_is_raised(acme: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(Counting, "boom", 3)
    run = make_run(acme, status="queued")
    with pytest.raises(AttributeError):
        Counting.handle(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.processed == 3 and run.finished_at is not None
    assert run.error == Counting.unexpected


class Unbuildable(Counting):
    """A kind of run whose setup fails (a bug, data it cannot read) before any unit."""

    def __init__(self, run: EvalRun) -> None:
        raise KeyError("version_id")


def test_a_run_whose_execution_cannot_be_built_fails_rather_than_stays_running(acme: Tenant) -> None:
    run = make_run(acme, status="queued")
    with pytest.raises(KeyError):
        Unbuildable.handle(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None and run.error == Unbuildable.unexpected


class RefusedWhileLanding(Counting):
    """Two at a time; unit 3 is slow, and its outcome stops the run (a permanent refusal)."""

    def concurrency(self) -> int:
        return 2

    def take(self, unit: int) -> Any:
        return unit, lambda x: (time.sleep(0.3) if x == 3 else None) or 2 * x, (unit,)

    def record(self, context: int, future: Future[int]) -> None:
        super().record(context, future)
        if context == 3:
            self.stop("refused")


def test_a_stop_that_lands_after_a_count_limit_is_not_a_success(acme: Tenant, monkeypatch: Any) -> None:
    """The count limit says the run did what it set out to (the schedule's window moves on); an
    outcome that stops the run while what is in flight lands says it did not: the run ends partial."""
    monkeypatch.setattr(Counting, "extra", [Limit("count", 4, "counted enough", done=True)])
    run = RefusedWhileLanding.handle(make_run(acme, status="queued").pk)
    assert run is not None and (run.status, run.stop_reason, run.processed) == ("partial", "refused", 4)


class Inconclusive(Counting):
    """Its final details cannot be computed (a bug in `conclude`)."""

    def conclude(self) -> None:
        raise ZeroDivisionError("a bug")


def test_a_run_whose_end_fails_is_failed_rather_than_left_running(acme: Tenant) -> None:
    run = make_run(acme, status="queued")
    with pytest.raises(ZeroDivisionError):
        Inconclusive.handle(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None and run.error == Inconclusive.unexpected
