"""Celery tasks of evaluations (queue `evals`). Thin: each takes ids and calls a service."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from evals import dashboard_metrics, tasks_agent, tasks_benchmarks, tasks_datasets  # noqa: F401  (their tasks register on import)
from evals.lifecycle import TASK_SOFT_TIME_LIMIT, TASK_TIME_LIMIT
from evals.services import evaluators, reports, runs


@shared_task(name="evals.tasks.run_schedule", queue="evals", soft_time_limit=60, ignore_result=True)
def run_schedule(schedule_id: int) -> int | None:
    """Fired by beat: a new run of the schedule's window (None when the schedule skips this tick)."""
    run = evaluators.schedule_run_create(schedule_id=schedule_id)
    return run.pk if run else None


@shared_task(name="evals.tasks.execute_eval_run", queue="evals", bind=True, soft_time_limit=TASK_SOFT_TIME_LIMIT,
             time_limit=TASK_TIME_LIMIT, autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True,
             max_retries=3, ignore_result=True)
def execute_eval_run(self: object, run_id: int) -> str | None:
    """Execute an evaluation run; a retry resumes it (claims are per trace)."""
    run = runs.eval_run_execute(run_id)
    return run.status if run else None


@shared_task(name="evals.tasks.generate_report", queue="evals", soft_time_limit=600, time_limit=660,
             ignore_result=True)
def generate_report(report_id: int) -> str:
    return reports.generate(report_id).status


@shared_task(name="evals.tasks.fail_stuck_runs", queue="evals", soft_time_limit=60, ignore_result=True)
def fail_stuck_runs() -> int:
    """Beat, every 10 minutes: runs of every kind whose worker was lost."""
    return runs.fail_stuck_runs()
