"""Celery tasks of the evaluation agent (queue `evals`). Thin: each takes ids and calls the loop.
Their time limits are above the longest investigation's own (MAX_SECONDS), which stops it cleanly first."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from evals.agent import loop
from evals.agent.models import MAX_SECONDS

SOFT_TIME_LIMIT = MAX_SECONDS + 120
TIME_LIMIT = MAX_SECONDS + 300


@shared_task(name="evals.tasks_agent.agent_investigate", queue="evals", soft_time_limit=SOFT_TIME_LIMIT,
             time_limit=TIME_LIMIT, autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True,
             max_retries=3, ignore_result=True)
def agent_investigate(report_id: int) -> str | None:
    """Investigate; a retry resumes from the stored steps; a finished report is left alone."""
    report = loop.investigate(report_id)
    return report.status if report else None


@shared_task(name="evals.tasks_agent.agent_answer", queue="evals", soft_time_limit=SOFT_TIME_LIMIT,
             time_limit=TIME_LIMIT, autoretry_for=(DatabaseError, ConnectionError), retry_backoff=True,
             max_retries=3, ignore_result=True)
def agent_answer(message_id: int) -> str | None:
    """Answer a follow-up question; a retry resumes from the stored steps."""
    message = loop.answer(message_id)
    return message.status if message else None


@shared_task(name="evals.tasks_agent.agent_run_schedule", queue="evals", soft_time_limit=60, ignore_result=True)
def agent_run_schedule(schedule_id: int) -> int | None:
    """Fired by beat: a queued report of the agent schedule (None when the schedule skips this tick)."""
    from evals.agent import schedules

    report = schedules.schedule_report_create(schedule_id=schedule_id)
    return report.pk if report else None
