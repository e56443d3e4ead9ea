"""Celery tasks of benchmarks (queue `evals`). Thin: each takes ids and calls a service."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from evals.services import benchmarks


@shared_task(name="evals.tasks.run_benchmark", bind=True, soft_time_limit=3300, time_limit=3600,
             autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True, max_retries=3, ignore_result=True)
def run_benchmark(self: object, run_id: int) -> str | None:
    """Run a benchmark; a retry resumes where the last attempt stopped."""
    run = benchmarks.execute(run_id)
    return run.status if run else None
