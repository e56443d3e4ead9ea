"""Running an evaluation over a window of a project's Langfuse traces.

Each (trace, evaluator version) is scored exactly once, across task retries
and overlapping runs: a run claims the score row (unique per pair) before
calling the judge, and the score is written to Langfuse with an id derived
from the pair, which Langfuse upserts. A run that stops early (judge spend
limit, Langfuse failing after its retries) ends `partial`; the next run
covers the same window again and skips what is already scored."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid
from collections import Counter
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Avg
from django.utils import timezone

from evals.concurrency import Bounded
from evals.gateway_client import PORTAL_TAG, GatewayCallError, GatewayClient
from evals.judge import JudgeParseError, Judgment, ScoreSpec, judge, render
from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import EvalRun, EvalSchedule, EvalScore, EvaluatorVersion, RunStatus, ScoreStatus
from evals.service_keys import service_key
from portal.notify import send_alert

log = logging.getLogger(__name__)
SCORE_NAMESPACE = uuid.UUID("6f1d2c3a-7b0e-4e55-9a3b-0c2f5d8e9a41")
STALE_CLAIM = dt.timedelta(minutes=10)
PROGRESS_EVERY = 5
DEFAULT_CONCURRENCY = 4
SCAN_PER_TRACE = 20  # a run reads at most this many traces per trace it may score (filters, sampling)
LANGFUSE_TYPES = {"numeric": "NUMERIC", "boolean": "BOOLEAN", "categorical": "CATEGORICAL"}


class RunStopped(Exception):
    """Stop the run cleanly, keeping what was done."""


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


def ensure_score_config(client: LangfuseClient, version: EvaluatorVersion) -> str | None:
    spec: dict[str, Any] = {"description": version.evaluator.description or f"LLM-as-judge, {version}"}
    if version.score_type == "numeric":
        spec |= {"minValue": version.min_value, "maxValue": version.max_value}
    elif version.score_type == "categorical":
        spec |= {"categories": [{"label": label, "value": i} for i, label in enumerate(version.labels)]}
    config = client.score_config(version.evaluator.name, LANGFUSE_TYPES[version.score_type], **spec)
    return config.get("id")


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
        abandoned = (existing.status == ScoreStatus.FAILED or owner_done
                     or timezone.now() - existing.claimed_at > STALE_CLAIM)
        if not (mine or abandoned):
            return None
        existing.run, existing.status, existing.claimed_at = run, ScoreStatus.CLAIMED, timezone.now()
        existing.save(update_fields=["run", "status", "claimed_at"])
        return existing


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


class Runner:
    """Claims traces one by one in the main thread (database, Langfuse) and
    judges them on a pool of `concurrency` threads (only HTTP to the gateway)."""

    def __init__(self, run: EvalRun, langfuse: LangfuseClient, gateway: GatewayClient) -> None:
        self.run, self.langfuse, self.gateway = run, langfuse, gateway
        self.version = run.evaluator_version
        self.spec = ScoreSpec.of(self.version)
        self.schedule = run.schedule
        self.concurrency = self.schedule.concurrency if self.schedule else DEFAULT_CONCURRENCY
        self.config_id: str | None = None
        self.capped_at: str | None = None  # timestamp of the last trace, when max_traces stopped the run
        self.last_seen: str | None = None  # timestamp of the last trace read
        self.judging: Bounded[Judgment, EvalScore] = Bounded(self.concurrency, self.finish, "judge")
        self.stopped: str = ""
        self.langfuse_error: str = ""

    def save(self, *fields: str) -> None:
        self.run.save(update_fields=list(fields or [
            "considered", "sampled", "scored", "already_scored", "failed", "processed", "total", "judge_cost"]))

    def spend_left(self) -> bool:
        """Counting the judgements in flight at the average cost so far."""
        limit = self.schedule.max_judge_spend if self.schedule else None
        if limit is None:
            return True
        done = self.run.scored + self.run.failed
        average = self.run.judge_cost / done if done else Decimal(0)
        return self.run.judge_cost + average * len(self.judging) < limit

    def judge_trace(self, trace: dict[str, Any]) -> Judgment:
        prompt = render(self.version.prompt_template, self.version.variables, trace_source(trace))
        return judge(self.gateway, route=self.version.judge_route.name, prompt=prompt, spec=self.spec,
                     output_mode=self.version.output_mode)

    def record(self, row: EvalScore, future: Future[Judgment]) -> None:
        """The outcome of one judgement, saved and pushed (main thread)."""
        try:
            result = future.result()
        except JudgeParseError as exc:
            row.status, row.error, row.judge_cost = ScoreStatus.FAILED, str(exc)[:500], Decimal(str(exc.cost))
            row.save(update_fields=["status", "error", "judge_cost"])
            self.run.failed += 1
            self.run.judge_cost += Decimal(str(exc.cost))
            return
        except GatewayCallError as exc:
            row.delete()  # not judged: a later run takes it
            if exc.permanent:
                self.stopped = self.stopped or f"the gateway refused the judge call: {exc}"
            else:
                self.run.failed += 1
            return
        row.status, row.value, row.label, row.comment = ScoreStatus.SCORED, result.value, result.label, result.comment
        row.judge_cost, row.latency_ms, row.scored_at = Decimal(str(result.cost)), result.latency_ms, timezone.now()
        row.save(update_fields=["status", "value", "label", "comment", "judge_cost", "latency_ms", "scored_at"])
        self.run.judge_cost += Decimal(str(result.cost))
        self.run.scored += 1
        self.push(row)

    def push(self, row: EvalScore) -> None:
        """Write the score to Langfuse. If Langfuse fails beyond the client's
        retries, the run stops (partial); unpushed scores go out next run."""
        if self.langfuse_error:
            return
        try:
            push(self.langfuse, row, self.version, self.config_id)
        except LangfuseError as exc:
            self.langfuse_error = str(exc)[:300]
            self.stopped = self.stopped or f"Langfuse failed: {exc}"[:300]

    def finish(self, row: EvalScore, future: Future[Judgment]) -> None:
        self.record(row, future)
        self.run.processed += 1
        if self.run.processed % PROGRESS_EVERY == 0:
            self.save()

    def submit(self, trace: dict[str, Any], row: EvalScore) -> None:
        if row.status == ScoreStatus.SCORED:  # scored before, never pushed
            self.push(row)
            self.run.already_scored += 1
            self.run.processed += 1
            return
        if self.stopped or not self.spend_left():
            row.delete()  # release the claim: a later run scores this trace
            self.stopped = self.stopped or "judge spend limit reached"
            return
        self.judging.submit(row, self.judge_trace, trace)

    def execute(self) -> None:
        run, schedule = self.run, self.schedule
        filters = schedule.filters if schedule else {}
        max_traces = schedule.max_traces if schedule else 1000
        rate = schedule.sampling_rate if schedule else 1.0
        self.config_id = ensure_score_config(self.langfuse, self.version)
        traces = self.langfuse.traces(
            from_time=run.window_start.isoformat() if run.window_start else None,
            to_time=run.window_end.isoformat() if run.window_end else None,
            name=filters.get("name"), tags=filters.get("tags"), user_id=filters.get("user_id"),
            environment=filters.get("environment"))
        run.considered = run.sampled = run.scored = run.already_scored = run.failed = run.processed = 0
        scan_limit = max_traces * SCAN_PER_TRACE
        with self.judging:  # leaving it lands what is in flight, even when the run stops
            for read, trace in enumerate(traces, 1):
                if self.stopped:
                    break
                if read > scan_limit:  # whatever the host lists (its pages may never end), the run ends
                    run.stop_reason = f"stopped after reading {scan_limit} traces; the next run goes on from here"
                    self.capped_at = self.last_seen
                    break
                if not isinstance(trace, dict) or not isinstance(trace.get("id"), str):
                    continue
                self.last_seen = trace.get("timestamp") or self.last_seen
                if not matches(trace, filters):
                    continue
                run.considered += 1
                if not sampled(trace["id"], rate):
                    continue
                if run.sampled >= max_traces:
                    run.stop_reason = f"stopped at the maximum of {max_traces} traces; the next run goes on from here"
                    break
                run.sampled += 1
                run.total = run.sampled
                self.capped_at = trace.get("timestamp")
                row = claim(run, trace["id"])
                if row is None:
                    run.already_scored += 1
                    run.processed += 1
                else:
                    self.submit(trace, row)
        if self.stopped:
            raise RunStopped(self.stopped)


def summarize(run: EvalRun) -> None:
    scores = EvalScore.objects.filter(run=run, status=ScoreStatus.SCORED)
    run.mean_score = scores.aggregate(m=Avg("value"))["m"]
    version = run.evaluator_version
    if version.score_type == "numeric":
        counts = Counter(f"{v:g}" for v in scores.values_list("value", flat=True))
    else:
        counts = Counter(scores.values_list("label", flat=True))
    run.distribution = dict(sorted(counts.items()))


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


def start(run_id: int) -> EvalRun | None:
    """Mark the run as running; a queued or (task retry) running run may start."""
    updated = EvalRun.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.RUNNING, started_at=timezone.now())
    return EvalRun.objects.select_related("project", "evaluator_version__evaluator", "evaluator_version__judge_route",
                                          "schedule").get(pk=run_id) if updated else None


UNEXPECTED = "The run stopped on an unexpected error (it is logged); nothing more was scored."


def execute_run(run_id: int) -> EvalRun | None:
    """Run it; whatever happens, the run ends in a final state: an
    unexpected error fails it (and is raised again, for the worker's log),
    rather than leaving it `running` until `fail_stuck_runs` (which still
    catches a run whose task ran out of retries)."""
    run = start(run_id)
    if run is None:
        return None
    try:
        return _execute(run)
    except (DatabaseError, ConnectionError):
        raise  # the task retries these (and a retry resumes the run)
    except Exception:
        log.exception("evaluation run %s failed", run_id)
        EvalScore.objects.filter(run_id=run_id, status=ScoreStatus.CLAIMED).delete()
        EvalRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=RunStatus.FAILED, error=UNEXPECTED, finished_at=timezone.now())
        raise


def _execute(run: EvalRun) -> EvalRun:
    t0 = time.monotonic()
    conn = getattr(run.project, "langfuse_connection", None)
    cursor = run.window_end
    try:
        if conn is None or not conn.enabled:
            raise RunStopped("the project has no Langfuse connection")
        with conn.client() as langfuse:
            runner = Runner(run, langfuse, GatewayClient(service_key(run.project)))
            runner.execute()
        run.status = RunStatus.SUCCEEDED
        if run.stop_reason and runner.capped_at:  # capped: the next run starts at the last trace seen
            cursor = dt.datetime.fromisoformat(runner.capped_at.replace("Z", "+00:00"))
    except RunStopped as stop:
        run.stop_reason = str(stop)
        run.status = RunStatus.PARTIAL if run.processed else RunStatus.FAILED
        run.error = "" if run.processed else str(stop)
    except LangfuseError as exc:
        run.status, run.stop_reason = (RunStatus.PARTIAL if run.processed else RunStatus.FAILED), str(exc)[:300]
        run.error = str(exc)[:1000]
    # Claims the run took but did not score are released for the next run.
    EvalScore.objects.filter(run=run, status=ScoreStatus.CLAIMED).delete()
    summarize(run)
    run.finished_at = timezone.now()
    run.duration_ms = int((time.monotonic() - t0) * 1000)
    run.save()
    if run.status == RunStatus.SUCCEEDED and run.schedule_id and cursor:
        EvalSchedule.objects.filter(pk=run.schedule_id).update(last_window_end=cursor)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
        alert_if_needed(run)
    return run


STUCK_AFTER = dt.timedelta(hours=2)


def fail_stuck_runs() -> int:
    """Runs whose worker died (killed, out of retries, past its hard time
    limit) stay `running`; after longer than any run may take they are failed,
    and their claims released."""
    cutoff = timezone.now() - STUCK_AFTER
    stuck = EvalRun.objects.filter(status__in=[RunStatus.RUNNING, RunStatus.QUEUED], created_at__lt=cutoff)
    ids = list(stuck.values_list("pk", flat=True))
    EvalScore.objects.filter(run_id__in=ids, status=ScoreStatus.CLAIMED).delete()
    return stuck.update(status=RunStatus.FAILED, error="The run stopped without finishing (its worker was lost).",
                        finished_at=timezone.now())
