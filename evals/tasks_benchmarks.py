"""Celery tasks of benchmarks (queue `evals`)."""
