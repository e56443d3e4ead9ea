"""The one lifecycle of every kind of run: evaluation runs (a window of
Langfuse traces), calibrations (a dataset's labelled items) and benchmark runs
(items x routes). In the manner of NetBox's `JobRunner.handle`, one place
claims a run, runs its units, stops it on a limit, and gives it its final
state, whatever happened:

    queued --claim--> running --> succeeded | partial | failed
                        ^  |
                        +--+  a task retry (database or connection error), or a worker that died
                              and whose task was redelivered (acks late), claims it again and resumes

- Claim: a conditional UPDATE (`queued` or `running` -> `running`), so a run is
  executed by whichever attempt of its task is alive; a finished run is never
  run again.
- Run: the main thread lists the units and takes each (claims its row); the
  slow part, HTTP to the gateway, runs on `Bounded`'s pool, at most
  `concurrency` at a time; each outcome is recorded back in the main thread,
  which alone touches the database and Langfuse.
- Stop: `Limit`s (time, spend, count) are checked before each unit is taken;
  reaching one, a permanent refusal (budget, route) or Langfuse failing raises
  `RunStopped`. What is in flight lands, what was done is kept.
- Finish: `succeeded` (`RunStopped(done=True)`: a count limit, the next run
  goes on from there), `partial` (stopped, something was done) or `failed`;
  an unexpected error fails the run and is raised again for the worker's log
  (also one in building the execution or in ending the run: `fail_unfinished`).
  Claims not done are released.
- Resume: a retried or redelivered task claims the run again and goes on, each
  kind skipping what is done; a run whose worker is gone for good (killed, out
  of retries) is failed by `fail_stuck` (beat, every 10 minutes) after longer
  than any run may take.

A kind of run is a subclass of `Execution` that says what its units are, how
it takes one, what runs on the pool and how an outcome is recorded."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError
from django.db.models import Model, Q
from django.utils import timezone

from evals.concurrency import Bounded
from evals.models import RunStatus

log = logging.getLogger(__name__)

#: The worker's limits for one run's task (Celery), and the run's own time limit, well inside
#: them: the run stops cleanly (partial), lands what is in flight and finishes before Celery's
#: soft limit interrupts it (which, if it comes, is handled as the same time limit).
TASK_TIME_LIMIT = 3600
TASK_SOFT_TIME_LIMIT = 3300
RUN_SECONDS = 3000
#: Longer than any run may take (the task's hard limit and its retries): a run still queued or
#: running after that has lost its worker.
STUCK_AFTER = dt.timedelta(hours=2)

U = TypeVar("U")  # a unit of work, as `units` lists it
C = TypeVar("C")  # what the main thread keeps of a unit while it is on the pool
R = TypeVar("R")  # what the pool's work returns


class RunStopped(Exception):
    """Stop the run cleanly, keeping what was done. `done`: the run did what it
    set out to (a count limit: the next run goes on from here) and succeeds;
    otherwise it ends partial, or failed when nothing was done. `error`: kept
    as the run's error even when it ends partial."""

    def __init__(self, reason: str, *, done: bool = False, error: str = "") -> None:
        super().__init__(reason)
        self.reason, self.done, self.error = reason, done, error


@dataclass(frozen=True)
class Limit:
    """A bound on a run: once `Execution.measure(measure)` reaches `at`, the run
    stops with `reason`. Measures: `seconds` (since the run started),
    `spend` (what it cost, with what is in flight), `count` (units taken)."""

    measure: str
    at: float | Decimal | int
    reason: str
    done: bool = False


class Execution(Generic[U, C, R]):
    """One run being executed. `handle(run_id)` is the whole lifecycle; a
    kind of run fills in the hooks below."""

    #: The run model (`EvalRun`, `BenchmarkRun`) and what `claim` loads with it.
    model: ClassVar[type[Model]]
    related: ClassVar[tuple[str, ...]] = ()
    #: The pool's thread names, and the error an unexpected exception leaves on the run.
    name: ClassVar[str] = "run"
    unexpected: ClassVar[str] = "The run stopped on an unexpected error (it is logged); nothing more was done."
    time_reason: ClassVar[str] = "stopped at the time limit"
    lost: ClassVar[str] = "The run stopped without finishing (its worker was lost)."

    def __init__(self, run: Any) -> None:
        self.run = run
        self.started = time.monotonic()
        self.taken = 0
        self.stopped: RunStopped | None = None  # set by `record`: the run ends once what is in flight lands
        self.pool: Bounded[R, C] = Bounded(self.concurrency(), self._landed, self.name)

    # What a kind of run says ------------------------------------------

    def concurrency(self) -> int:
        return 4

    def limits(self) -> list[Limit]:
        return [Limit("seconds", RUN_SECONDS, self.time_reason)]

    def measure(self, name: str) -> float | Decimal | int:
        if name == "seconds":
            return time.monotonic() - self.started
        if name == "count":
            return self.taken
        raise NotImplementedError(name)

    def prepare(self) -> None:
        """Before the first unit (clients, the score configuration...)."""

    def units(self) -> Iterable[U]:
        raise NotImplementedError

    def take(self, unit: U) -> tuple[C, Callable[..., R], tuple[Any, ...]] | None:
        """Main thread: claim the unit; what to run on the pool for it (context, function,
        arguments), or None when it needs no call (already done, recorded here)."""
        raise NotImplementedError

    def record(self, context: C, future: Future[R]) -> bool | None:
        """Main thread: save one outcome (`future.result()` raises what the call raised);
        False when it was not recorded (the run stops, another attempt recorded it)."""
        raise NotImplementedError

    def progress(self) -> None:
        """Save the counters now and then, for whoever watches the run."""

    def release(self) -> None:
        """The claims this run took and did not finish, for a later run."""

    def conclude(self) -> None:
        """The run's final details (summary, matrix), before it is saved in its final state."""

    def close(self) -> None:
        """Whatever `prepare` opened."""

    # The lifecycle ------------------------------------------------------

    @classmethod
    def claim(cls, run_id: int) -> Any | None:
        """Mark the run as running; a queued or (a retry, a redelivered task) running run may start."""
        updated = cls.model._default_manager.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
                                                    ).update(status=RunStatus.RUNNING, started_at=timezone.now())
        return cls.model._default_manager.select_related(*cls.related).get(pk=run_id) if updated else None

    @classmethod
    def handle(cls, run_id: int, **options: Any) -> Any | None:
        """Execute the run; whatever happens, it ends in a final state (except on a
        database or connection error, which the task retries: the retry resumes it).
        `options` go to the constructor."""
        run = cls.claim(run_id)
        if run is None:
            return None
        execution = cls.build(run, **options)
        try:
            execution.settle()
        except (DatabaseError, ConnectionError):
            raise
        except Exception:  # ending the run failed too (a bug in `conclude`): it must not stay running
            cls.fail_unfinished(run.pk)
            raise
        finally:
            execution.close()
        return run

    def settle(self) -> None:
        """Execute the run and give it its final state."""
        try:
            self.execute()
        except RunStopped as stop:
            self.end(stop)
        except SoftTimeLimitExceeded:  # Celery's limit came first (a slow call in flight)
            self.end(RunStopped(self.time_reason))
        except (DatabaseError, ConnectionError):
            raise
        except Exception:
            log.exception("%s %s failed", self.name, self.run.pk)
            self.end(RunStopped("", error=self.unexpected), failed=True)
            raise
        else:
            self.end(None)

    @classmethod
    def build(cls, run: Any, **options: Any) -> Execution[U, C, R]:
        """The execution of a claimed run. If building it fails (its setup cannot be read),
        nothing ran, but the run fails rather than stays `running` until `fail_stuck`."""
        try:
            return cls(run, **options)
        except (DatabaseError, ConnectionError):
            raise  # the task retries
        except Exception:
            log.exception("%s %s failed", cls.name, run.pk)
            cls.fail_unfinished(run.pk)
            raise

    @classmethod
    def fail_unfinished(cls, run_id: int) -> None:
        """The last resort when the lifecycle itself failed: a run still running fails, its claims released."""
        cls.release_all([run_id])
        cls.model._default_manager.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=RunStatus.FAILED, error=cls.unexpected, finished_at=timezone.now())

    def execute(self) -> None:
        self.prepare()
        try:
            with self.pool:  # leaving it lands what is in flight, even when the run stops
                for unit in self.units():
                    if self.stopped:
                        break
                    self.check_limits()
                    self.taken += 1
                    work = self.take(unit)
                    if work is not None:
                        context, fn, args = work
                        self.pool.submit(context, fn, *args)
        except RunStopped as stop:
            # A limit that means "done" (a count: the schedule's window moves on) does not hold if
            # what landed while leaving the pool stopped the run (a refusal left its units undone).
            if stop.done and self.stopped is not None:
                raise self.stopped from None
            raise
        if self.stopped:
            raise self.stopped

    def check_limits(self) -> None:
        for limit in self.limits():
            if self.measure(limit.measure) >= limit.at:
                raise RunStopped(limit.reason, done=limit.done)

    def stop(self, reason: str, **kwargs: Any) -> None:
        """From `record`: the run stops once what is in flight has landed (the first reason stays)."""
        self.stopped = self.stopped or RunStopped(reason, **kwargs)

    def _landed(self, context: C, future: Future[R]) -> None:
        if self.record(context, future) is not False:
            self.run.processed += 1
        self.progress()

    def end(self, stop: RunStopped | None, *, failed: bool = False) -> None:
        """The final state: the one place a run's status is decided."""
        run = self.run
        if stop is None:
            run.status = RunStatus.SUCCEEDED
        elif failed:
            run.status = RunStatus.FAILED
        elif stop.done:
            run.status = RunStatus.SUCCEEDED
        else:
            run.status = RunStatus.PARTIAL if run.processed else RunStatus.FAILED
        self.note(stop, run.status)
        self.release()
        self.conclude()
        run.finished_at = timezone.now()
        run.save()
        self.finished()

    def finished(self) -> None:
        """After the run is saved in its final state (what follows from it: the schedule's window, alerts)."""

    def note(self, stop: RunStopped | None, status: str) -> None:
        """Why the run stopped, on the run (an `EvalRun`: `stop_reason` and `error`)."""
        if stop is None:
            return
        self.run.stop_reason = stop.reason[:300]
        self.run.error = (stop.error or ("" if status != RunStatus.FAILED or self.run.processed
                                         else stop.reason))[:1000]

    @classmethod
    def stuck(cls) -> Q:
        """Runs of this kind that lost their worker: queued or running for longer than any run may take."""
        cutoff = timezone.now() - STUCK_AFTER
        return Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING], created_at__lt=cutoff) & (
            Q(started_at__isnull=True) | Q(started_at__lt=cutoff))

    @classmethod
    def fail_stuck(cls, among: Q | None = None) -> int:
        """Fail the runs of this kind whose worker is gone for good; release their claims."""
        stuck = cls.model._default_manager.filter(cls.stuck(), *([among] if among is not None else []))
        cls.release_all(list(stuck.values_list("pk", flat=True)))
        return stuck.update(status=RunStatus.FAILED, error=cls.lost, finished_at=timezone.now())

    @classmethod
    def release_all(cls, run_ids: list[int]) -> None:
        """The claims of runs that will not finish."""
