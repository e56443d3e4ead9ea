"""Celery tasks of benchmarks (queue `evals`). Thin: each takes ids and calls a service."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from evals.lifecycle import TASK_SOFT_TIME_LIMIT, TASK_TIME_LIMIT
from evals.services import benchmarks


@shared_task(name="evals.tasks_benchmarks.execute_benchmark_run", queue="evals", bind=True,
             soft_time_limit=TASK_SOFT_TIME_LIMIT, time_limit=TASK_TIME_LIMIT,
             autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True, max_retries=3, ignore_result=True)
def execute_benchmark_run(self: object, run_id: int) -> str | None:
    """Execute a benchmark run; a retry resumes where the last attempt stopped."""
    run = benchmarks.benchmark_run_execute(run_id)
    return run.status if run else None
