"""Executing an evaluation run: the judge over a window of a project's
Langfuse traces, on the run lifecycle (`evals/lifecycle.py`).

Each (trace, evaluator version) is scored exactly once, across task retries
and overlapping runs: a run claims the score row (unique per pair) before
calling the judge, and the score is written to Langfuse with an id derived
from the pair, which Langfuse upserts. A run that stops early (judge spend
limit, Langfuse failing after its retries) ends `partial`; the next run
covers the same window again and skips what is already scored.

A scheduled run never skips a trace: its window ends `EVALS_INGESTION_DELAY_SECONDS`
before it starts (Langfuse ingests traces asynchronously, so the newest are
not listed yet), and a trace whose judge call failed for a transient reason
(the gateway's 5xx or time-out) is kept as `retry` and judged again by the
schedule's next run, whatever its window, up to `MAX_ATTEMPTS` times; so is
the push of a score Langfuse failed to take."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from evals.gateway_client import PORTAL_TAG, GatewayCallError
from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.lifecycle import Limit, RunStopped
from evals.models import EvalRun, EvalSchedule, EvalScore, EvaluatorVersion, RunStatus, ScoreStatus
from evals.services.judging import LANGFUSE_TYPES, JudgeExecution, ensure_score_config
from portal.notify import send_alert

SCORE_NAMESPACE = uuid.UUID("6f1d2c3a-7b0e-4e55-9a3b-0c2f5d8e9a41")
STALE_CLAIM = dt.timedelta(minutes=10)
DEFAULT_CONCURRENCY = 4
SCAN_PER_TRACE = 20  # a run reads at most this many traces per trace it may score (filters, sampling)
MAX_ATTEMPTS = 5  # judge calls of one trace that failed for a transient reason, before it counts as failed
UNEXPECTED = "The run stopped on an unexpected error (it is logged); nothing more was scored."


def sampled(trace_id: str, rate: float) -> bool:
    """Deterministic by trace id: the same trace is in or out in every run."""
    if rate >= 1.0:
        return True
    return int(hashlib.sha256(trace_id.encode()).hexdigest()[:8], 16) / 0x100000000 < rate


def matches(trace: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Filters the traces API cannot apply itself (metadata); and never the
    portal's own judge and benchmark calls."""
    if PORTAL_TAG in (trace.get("tags") or []):
        return False
    wanted = filters.get("metadata") or {}
    meta = trace.get("metadata") or {}
    return all(isinstance(meta, dict) and str(meta.get(k)) == str(v) for k, v in wanted.items())


def score_id(version: EvaluatorVersion, trace_id: str) -> str:
    return str(uuid.uuid5(SCORE_NAMESPACE, f"{version.evaluator.project_id}:{version.pk}:{trace_id}"))


def trace_source(trace: dict[str, Any]) -> dict[str, Any]:
    """What a judge prompt can refer to, from a Langfuse trace."""
    return {"input": trace.get("input"), "output": trace.get("output"), "metadata": trace.get("metadata") or {},
            "name": trace.get("name"), "tags": trace.get("tags"), "user_id": trace.get("userId"),
            "session_id": trace.get("sessionId"), "trace_id": trace.get("id"),
            "expected_output": (trace.get("metadata") or {}).get("expected_output")
            if isinstance(trace.get("metadata"), dict) else None}


def claim(run: EvalRun, trace_id: str) -> EvalScore | None:
    """This run's claim on the trace's score, or None when another run has it
    (or it is already scored)."""
    version = run.evaluator_version
    try:
        with transaction.atomic():
            return EvalScore.objects.create(project_id=run.project_id, evaluator_version=version, trace_id=trace_id,
                                            run=run, langfuse_score_id=score_id(version, trace_id))
    except IntegrityError:
        pass
    with transaction.atomic():
        existing = (EvalScore.objects.select_for_update(of=("self",)).select_related("run")
                    .get(evaluator_version=version, trace_id=trace_id))
        if existing.status == ScoreStatus.SCORED:
            return existing if existing.pushed_at is None else None  # scored: push it if that never happened
        mine = existing.run_id == run.pk
        owner_done = existing.run is None or existing.run.status not in (RunStatus.QUEUED, RunStatus.RUNNING)
        abandoned = (existing.status in (ScoreStatus.FAILED, ScoreStatus.RETRY) or owner_done
                     or timezone.now() - existing.claimed_at > STALE_CLAIM)
        if not (mine or abandoned):
            return None
        existing.run, existing.status, existing.claimed_at = run, ScoreStatus.CLAIMED, timezone.now()
        existing.save(update_fields=["run", "status", "claimed_at"])
        return existing


def claim_retry(run: EvalRun, row: EvalScore) -> bool:
    """Take a `retry` row for this run (a conditional UPDATE: one run takes it)."""
    return bool(EvalScore.objects.filter(pk=row.pk, status=ScoreStatus.RETRY).update(
        run=run, status=ScoreStatus.CLAIMED, claimed_at=timezone.now()))


def push(client: LangfuseClient, score: EvalScore, version: EvaluatorVersion, config_id: str | None) -> None:
    if version.score_type == "categorical":
        value: Any = score.label
    else:
        value = score.value
    client.create_score({"id": score.langfuse_score_id, "traceId": score.trace_id, "name": version.evaluator.name,
                         "value": value, "dataType": LANGFUSE_TYPES[version.score_type], "comment": score.comment,
                         "configId": config_id, "metadata": {"portal_evaluator_version": version.version}})
    score.pushed_at = timezone.now()
    score.save(update_fields=["pushed_at"])


class EvaluationRun(JudgeExecution):
    """The units are the schedule's `retry` rows, then the window's traces
    that match the filters and are sampled; each is claimed, judged on the
    pool and its score pushed to Langfuse."""

    name = "evaluation run"
    unexpected = UNEXPECTED

    def __init__(self, run: EvalRun) -> None:
        self.schedule: EvalSchedule | None = run.schedule
        self.filters: dict[str, Any] = self.schedule.filters if self.schedule else {}
        self.max_traces = self.schedule.max_traces if self.schedule else 1000
        self.rate = self.schedule.sampling_rate if self.schedule else 1.0
        self.langfuse: LangfuseClient | None = None
        self.config_id: str | None = None
        self.capped_at: str | None = None  # timestamp of the last trace taken, when a count limit stopped the run
        self.last_seen: str | None = None  # timestamp of the last trace read
        self.retried = 0
        self.taken_again: set[str] = set()  # trace ids taken as retries (the window may list them too)
        self.langfuse_error = ""
        super().__init__(run)

    def concurrency(self) -> int:
        return self.schedule.concurrency if self.schedule else DEFAULT_CONCURRENCY

    def limits(self) -> list[Limit]:
        limits = [*super().limits(), Limit("count", self.max_traces, f"stopped at the maximum of {self.max_traces} "
                                           "traces; the next run goes on from here", done=True)]
        if self.schedule and self.schedule.max_judge_spend is not None:
            limits.append(Limit("spend", self.schedule.max_judge_spend, "judge spend limit reached"))
        return limits

    def measure(self, name: str) -> float | Decimal | int:
        run = self.run
        if name == "count":
            return run.sampled
        if name == "spend":  # counting the judgements in flight at the average cost so far
            done = run.scored + run.failed
            average = run.judge_cost / done if done else Decimal(0)
            return run.judge_cost + average * len(self.pool)
        return super().measure(name)

    def execute(self) -> None:
        try:
            super().execute()
        except LangfuseError as exc:  # beyond the client's retries: the run stops, the window stays
            raise RunStopped(str(exc)[:300], error=str(exc)[:1000]) from None

    def prepare(self) -> None:
        conn = getattr(self.run.project, "langfuse_connection", None)
        if conn is None or not conn.enabled:
            raise RunStopped("the project has no Langfuse connection")
        self.langfuse = conn.client()
        self.config_id = ensure_score_config(self.langfuse, self.version)

    def close(self) -> None:
        if self.langfuse is not None:
            self.langfuse.close()

    # Units -------------------------------------------------------------

    def units(self) -> Any:
        run = self.run
        run.considered = run.sampled = run.scored = run.already_scored = run.failed = run.processed = 0
        yield from self.retries()
        yield from self.window()

    def retries(self) -> Any:
        """The schedule's traces left behind by its earlier runs: judging failed for a transient
        reason, or scored but not written to Langfuse (it failed), whatever the window."""
        if self.schedule is None:
            return
        left = Q(status=ScoreStatus.RETRY) | Q(status=ScoreStatus.SCORED, pushed_at__isnull=True)
        rows = EvalScore.objects.filter(left, evaluator_version=self.version, run__schedule=self.schedule)
        yield from (("retry", row) for row in rows.order_by("id")[:self.max_traces])

    def window(self) -> Any:
        run, langfuse = self.run, self.langfuse
        assert langfuse is not None
        traces = langfuse.traces(
            from_time=run.window_start.isoformat() if run.window_start else None,
            to_time=run.window_end.isoformat() if run.window_end else None,
            name=self.filters.get("name"), tags=self.filters.get("tags"), user_id=self.filters.get("user_id"),
            environment=self.filters.get("environment"))
        scan_limit = self.max_traces * SCAN_PER_TRACE
        for read, trace in enumerate(traces, 1):
            if read > scan_limit:  # whatever the host lists (its pages may never end), the run ends
                self.capped_at = self.last_seen
                raise RunStopped(f"stopped after reading {scan_limit} traces; the next run goes on from here",
                                 done=True)
            if not isinstance(trace, dict) or not isinstance(trace.get("id"), str):
                continue
            self.last_seen = trace.get("timestamp") or self.last_seen
            if not matches(trace, self.filters):
                continue
            run.considered += 1
            if sampled(trace["id"], self.rate):
                yield ("trace", trace)

    def take(self, unit: tuple[str, Any]) -> Any:
        kind, value = unit
        return self.take_retry(value) if kind == "retry" else self.take_trace(value)

    def take_trace(self, trace: dict[str, Any]) -> Any:
        run = self.run
        if trace["id"] in self.taken_again:
            return None  # taken as a retry already
        run.sampled += 1
        run.total = run.sampled + self.retried
        self.capped_at = trace.get("timestamp")
        row = claim(run, trace["id"])
        if row is None or row.status == ScoreStatus.SCORED:  # another run's, or scored before and never pushed
            if row is not None:
                self.push(row)
            run.already_scored += 1
            run.processed += 1
            return None
        return self.judging(row, trace_source(trace))

    def take_retry(self, row: EvalScore) -> Any:
        self.taken_again.add(row.trace_id)
        if row.status == ScoreStatus.SCORED:  # judged, never pushed
            self.push(row)
            self.run.already_scored += 1
            self.run.processed += 1
            return None
        if not claim_retry(self.run, row):
            return None  # another run took it
        assert self.langfuse is not None
        try:
            trace = self.langfuse.trace(row.trace_id)
        except LangfuseError as exc:
            if not exc.permanent:
                raise
            row.run = self.run
            self.failed(row, f"the trace could not be read again: {exc}")
            self.run.processed += 1
            return None
        self.retried += 1
        self.run.total = self.run.sampled + self.retried
        row.run = self.run
        return self.judging(row, trace_source(trace))

    # Outcomes ----------------------------------------------------------

    def unanswered(self, row: EvalScore, exc: GatewayCallError) -> None:
        """Not judged: the schedule's next run tries again (a run without a schedule: a later run of the window)."""
        row.attempts += 1
        if row.attempts >= MAX_ATTEMPTS:
            self.failed(row, f"the judge call failed {row.attempts} times: {exc}")
            return
        row.status, row.error = ScoreStatus.RETRY, f"the judge call failed: {exc}"[:500]
        row.save(update_fields=["status", "error", "attempts"])
        self.run.failed += 1

    def scored(self, row: EvalScore) -> None:
        self.push(row)

    def push(self, row: EvalScore) -> None:
        """Write the score to Langfuse. If Langfuse fails beyond the client's
        retries, the run stops (partial); unpushed scores go out next run."""
        if self.langfuse_error or self.langfuse is None:
            return
        try:
            push(self.langfuse, row, self.version, self.config_id)
        except LangfuseError as exc:
            self.langfuse_error = str(exc)[:300]
            self.stop(f"Langfuse failed: {exc}"[:300])

    # The end -----------------------------------------------------------

    def finished(self) -> None:
        run = self.run
        if run.status == RunStatus.SUCCEEDED and run.schedule_id:
            cursor = run.window_end
            if run.stop_reason and self.capped_at:  # capped: the next run starts at the last trace taken
                cursor = dt.datetime.fromisoformat(self.capped_at.replace("Z", "+00:00"))
            if cursor:
                EvalSchedule.objects.filter(pk=run.schedule_id).update(last_window_end=cursor)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
            alert_if_needed(run)

    @classmethod
    def release_all(cls, run_ids: list[int]) -> None:
        """Claims not judged are released for the next run; a retried trace stays a retry."""
        claimed = EvalScore.objects.filter(run_id__in=run_ids, status=ScoreStatus.CLAIMED)
        claimed.filter(attempts__gt=0).update(status=ScoreStatus.RETRY)
        claimed.delete()

    def release(self) -> None:
        self.release_all([self.run.pk])


def alert_if_needed(run: EvalRun) -> None:
    schedule = run.schedule
    if schedule is None or run.mean_score is None:
        return
    previous = (EvalRun.objects.filter(schedule=schedule, status__in=[RunStatus.SUCCEEDED, RunStatus.PARTIAL],
                                       mean_score__isnull=False).exclude(pk=run.pk).order_by("-created_at").first())
    reasons = []
    if schedule.alert_below is not None and run.mean_score < schedule.alert_below:
        reasons.append(f"the mean score {run.mean_score:.3f} is below {schedule.alert_below:g}")
    if (schedule.alert_drop is not None and previous is not None and previous.mean_score is not None
            and previous.mean_score - run.mean_score > schedule.alert_drop):
        reasons.append(f"the mean score dropped from {previous.mean_score:.3f} to {run.mean_score:.3f}")
    if not reasons:
        return
    project = run.project
    subject = f"Evaluation '{schedule.name}' of {project.name}: {'; '.join(reasons)}"
    send_alert(project.organization, subject=subject, body=subject + f".\n\nRun {run.pk}: {run.scored} traces scored.",
               payload={"kind": "evaluation", "project": project.name, "schedule": schedule.name, "run": run.pk,
                        "mean_score": run.mean_score, "previous_mean_score": previous.mean_score if previous else None,
                        "reasons": reasons})


def eval_run_execute(run_id: int) -> EvalRun | None:
    """Execute a queued evaluation run (the `evals` worker); None when it already finished."""
    return EvaluationRun.handle(run_id)


def fail_stuck_runs() -> int:
    """Runs of every kind (and the agent's reports and answers) whose worker died (killed, out
    of retries, past its hard time limit) stay `running`; after longer than any run may take
    they are failed, and their claims released."""
    from evals.agent.services import fail_stuck as agent_fail_stuck
    from evals.services.benchmarks.execution import BenchmarkExecution

    return EvaluationRun.fail_stuck() + BenchmarkExecution.fail_stuck() + agent_fail_stuck()
