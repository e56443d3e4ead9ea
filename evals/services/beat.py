"""Celery beat entries of the portal's schedules (evaluation schedules and the agent's): a UTC crontab
checked one way, and the schedule's one PeriodicTask kept in step with it (created, updated, and beat's
change marker bumped so a running beat sees the change)."""

from __future__ import annotations

import json
from typing import Any

from celery.schedules import crontab
from django_celery_beat.models import CrontabSchedule, PeriodicTask


def parse_crontab(cron: str) -> crontab:
    """A 5-field crontab ("minute hour day-of-month month day-of-week"); ValueError when it is not one."""
    parts = cron.split()
    if len(parts) != 5:
        raise ValueError("not 5 fields")
    try:
        return crontab(*parts)
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def crontab_entry(cron: str) -> dict[str, Any]:
    """The PeriodicTask fields of a UTC crontab (a checked one)."""
    minute, hour, day_of_month, month, day_of_week = cron.split()
    schedule, _ = CrontabSchedule.objects.get_or_create(minute=minute, hour=hour, day_of_month=day_of_month,
                                                        month_of_year=month, day_of_week=day_of_week,
                                                        timezone="UTC")
    return {"crontab": schedule, "interval": None}


def sync_entry(owner: Any, *, name: str, task: str, queue: str, args: list[Any], enabled: bool,
               when: dict[str, Any]) -> None:
    """Creates or updates `owner.periodic_task` (a saved model with that nullable foreign key) to fire `task`
    with `args` on `queue` at `when` (crontab_entry(), or {"interval": ..., "crontab": None})."""
    fields = {"task": task, "args": json.dumps(args), "queue": queue, "enabled": enabled, **when}
    if owner.periodic_task is None:
        owner.periodic_task = PeriodicTask.objects.create(name=name, **fields)
        owner.save(update_fields=["periodic_task"])
    else:
        PeriodicTask.objects.filter(pk=owner.periodic_task_id).update(**fields)
        PeriodicTask.objects.get(pk=owner.periodic_task_id).save()  # bumps beat's change marker
