"""Celery tasks of datasets and judge calibration (queue `evals`)."""
