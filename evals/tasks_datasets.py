"""Celery tasks of datasets and judge calibration (queue `evals`). Thin: each takes ids and calls a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError

from evals.services import calibration, datasets


@shared_task(name="evals.tasks.build_dataset_from_traces", soft_time_limit=900, time_limit=960, ignore_result=True)
def build_dataset_from_traces(dataset_id: int, user_id: int | None, spec: dict[str, Any]) -> None:
    """A build too large for the request; its outcome goes to the audit log."""
    datasets.build_in_background(dataset_id=dataset_id, user_id=user_id, spec=spec)


@shared_task(name="evals.tasks.push_dataset", soft_time_limit=1800, time_limit=1860, ignore_result=True)
def push_dataset(dataset_id: int, user_id: int | None, name: str) -> None:
    """A push too large for the request. Pushing again is safe: Langfuse upserts items by id."""
    datasets.push_in_background(dataset_id=dataset_id, user_id=user_id, name=name)


@shared_task(name="evals.tasks.calibrate", soft_time_limit=3300, time_limit=3600,
             autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True, max_retries=3, ignore_result=True)
def calibrate(run_id: int, concurrency: int = 4) -> str | None:
    """Judge a dataset calibration's items; a retry goes on with the items not judged yet."""
    try:
        run = calibration.execute_calibration(run_id, concurrency)
    except SoftTimeLimitExceeded:
        calibration.calibration_abort(run_id, "the calibration ran out of time")
        return None
    return run.status if run else None
