"""Celery tasks of datasets and judge calibration (queue `evals`). Thin: each takes ids and calls a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError

from evals.lifecycle import TASK_SOFT_TIME_LIMIT, TASK_TIME_LIMIT
from evals.services import calibration, datasets


@shared_task(name="evals.tasks_datasets.build_dataset_from_traces", queue="evals", soft_time_limit=900,
             time_limit=960, ignore_result=True)
def build_dataset_from_traces(dataset_id: int, user_id: int | None, spec: dict[str, Any]) -> None:
    """A build too large for the request; its outcome goes to the audit log."""
    datasets.build_in_background(dataset_id=dataset_id, user_id=user_id, spec=spec)


@shared_task(name="evals.tasks_datasets.push_dataset", queue="evals", soft_time_limit=1800, time_limit=1860,
             ignore_result=True)
def push_dataset(dataset_id: int, user_id: int | None, name: str) -> None:
    """A push too large for the request. Pushing again is safe: Langfuse upserts items by id."""
    datasets.push_in_background(dataset_id=dataset_id, user_id=user_id, name=name)


@shared_task(name="evals.tasks_datasets.execute_calibration", queue="evals", soft_time_limit=TASK_SOFT_TIME_LIMIT,
             time_limit=TASK_TIME_LIMIT, autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True,
             max_retries=3, ignore_result=True)
def execute_calibration(run_id: int, concurrency: int = 4) -> str | None:
    """Judge a dataset calibration's items; a retry goes on with the items not judged yet."""
    run = calibration.calibration_execute(run_id, concurrency)
    return run.status if run else None
