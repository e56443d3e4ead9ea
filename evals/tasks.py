"""Celery tasks of evaluations (queue `evals`). Thin: each takes ids and calls a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError

from evals import tasks_benchmarks, tasks_datasets  # noqa: F401  (their tasks register on import)
from evals.models import EvalSchedule
from evals.services import evaluators, reports, runs
from portal.exceptions import Conflict

log = logging.getLogger(__name__)


@shared_task(name="evals.tasks.run_schedule", soft_time_limit=60, ignore_result=True)
def run_schedule(schedule_id: int) -> int | None:
    """Fired by beat: a new run of the schedule's window, executed by `execute_run`."""
    schedule = EvalSchedule.objects.select_related("project", "evaluator").filter(pk=schedule_id,
                                                                                 enabled=True).first()
    if schedule is None or schedule.evaluator.archived:
        return None
    try:
        run = evaluators.run_create(project=schedule.project, evaluator=schedule.evaluator, schedule=schedule)
    except Conflict as busy:  # the schedule's last run is still going: this tick is skipped
        log.info("schedule %s: not run: %s", schedule_id, busy)
        return None
    execute_run.delay(run.pk)
    return run.pk


@shared_task(name="evals.tasks.execute_run", bind=True, soft_time_limit=3300, time_limit=3600,
             autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True, max_retries=3, ignore_result=True)
def execute_run(self: object, run_id: int) -> str | None:
    run = runs.execute_run(run_id)
    return run.status if run else None


@shared_task(name="evals.tasks.generate_report", soft_time_limit=600, time_limit=660, ignore_result=True)
def generate_report(report_id: int) -> str:
    return reports.generate(report_id).status


@shared_task(name="evals.tasks.fail_stuck_runs", soft_time_limit=60, ignore_result=True)
def fail_stuck_runs() -> int:
    """Beat, every 10 minutes."""
    return runs.fail_stuck_runs()
