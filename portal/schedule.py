"""The portal's own periodic tasks, declared once: what Celery beat's database
scheduler (django-celery-beat) runs besides the evaluation schedules users create.

`manage.py seed_beat` makes the database's entries match this list: it creates
the missing ones, updates those that differ and removes the portal's entries no
longer listed (it marks its own with `OWN`, and adopts by name the entries the
data migrations of earlier versions created). It never touches the evaluation
schedules' entries (`evals: schedule <id>`) nor any entry an operator added.
An entry an admin disabled stays disabled.

Each entry names its task object, so that it follows a task that is renamed or
moved; its queue is the one the task declares."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Task
from django.db import transaction
from django.db.models import Q
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from evals import dashboard_metrics
from evals import tasks as evals_tasks
from gateway import tasks, tasks_admin

OWN = "The portal's own schedule (portal/schedule.py); manage.py seed_beat keeps it up to date."

# Entries the data migrations of earlier versions created that this list no longer has.
RETIRED = ("gateway: consume usage",)  # a worker starts the usage consumer (gateway/tasks.py)


@dataclass(frozen=True)
class Every:
    seconds: int

    def __str__(self) -> str:
        return f"every {self.seconds} s"


@dataclass(frozen=True)
class Crontab:
    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"

    def __str__(self) -> str:
        return f"at '{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}'"


@dataclass(frozen=True)
class Entry:
    name: str  # shown in the admin; the key an existing entry is found by
    task: Task
    when: Every | Crontab
    expires: int  # seconds: a run still queued after this is dropped (the next one is due soon)

    @property
    def queue(self) -> str | None:
        return getattr(self.task, "queue", None)  # the queue the task declares


SCHEDULE = (
    Entry("gateway: retry pushes to the gateway", tasks.sync_drain_outbox, Every(15), expires=14),
    Entry("gateway: re-push state Redis lost", tasks.sync_ensure_state, Every(5), expires=4),
    Entry("gateway: purge pushed outbox rows", tasks.sync_purge_outbox, Every(86400), expires=3600),
    # The litellm-admin mode's; each does nothing in managed mode.
    Entry("gateway: pull spend from LiteLLM (litellm-admin)", tasks_admin.sync_pull_spend, Every(60), expires=55),
    Entry("gateway: delete rotated-out keys in LiteLLM (litellm-admin)", tasks_admin.sync_expire_grace, Every(300),
          expires=290),
    Entry("evals: fail runs whose worker was lost", evals_tasks.fail_stuck_runs, Every(600), expires=590),
    Entry("evals: refresh the dashboards' Langfuse metrics", dashboard_metrics.refresh_all_metrics,
          Every(dashboard_metrics.STALE_SECONDS), expires=dashboard_metrics.STALE_SECONDS - 10),
)


def schedule_seed(*, entries: tuple[Entry, ...] = SCHEDULE) -> list[str]:
    """Make beat's database entries match `entries`; one line per change (none: nothing changed)."""
    changes = []
    with transaction.atomic():
        for entry in entries:
            changes += _seed_entry(entry)
        listed = [e.name for e in entries]
        for gone in PeriodicTask.objects.filter(Q(description=OWN) | Q(name__in=RETIRED)).exclude(name__in=listed):
            gone.delete()
            changes.append(f"removed  {gone.name} ({gone.task})")
    return changes


def _seed_entry(entry: Entry) -> list[str]:
    wanted = {"task": entry.task.name, "queue": entry.queue, "expire_seconds": entry.expires, "description": OWN,
              **_schedule_fields(entry.when)}
    found = PeriodicTask.objects.filter(name=entry.name).first()
    if found is None:
        PeriodicTask.objects.create(name=entry.name, enabled=True, **wanted)
        return [f"created  {entry.name} ({entry.task.name} {entry.when} on {entry.queue or 'the default queue'})"]
    differs = [field for field, value in wanted.items() if getattr(found, field) != value]
    if not differs:
        return []
    for field in differs:
        setattr(found, field, wanted[field])
    found.save()  # also tells a running beat to reload
    return [f"updated  {entry.name} ({', '.join(differs)})"]


def _schedule_fields(when: Every | Crontab) -> dict[str, object]:
    if isinstance(when, Every):
        interval = IntervalSchedule.objects.filter(every=when.seconds, period="seconds").order_by("pk").first() \
            or IntervalSchedule.objects.create(every=when.seconds, period="seconds")
        return {"interval": interval, "crontab": None, "clocked": None, "solar": None}
    fields = {"minute": when.minute, "hour": when.hour, "day_of_week": when.day_of_week,
              "day_of_month": when.day_of_month, "month_of_year": when.month_of_year}
    crontab = CrontabSchedule.objects.filter(**fields).order_by("pk").first() or CrontabSchedule.objects.create(**fields)
    return {"interval": None, "crontab": crontab, "clocked": None, "solar": None}
