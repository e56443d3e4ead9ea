"""`manage.py seed_beat`: beat's database entries follow the declared schedule (portal/schedule.py),
and only the portal's own entries are touched."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from gateway import tasks
from portal.schedule import OWN, RETIRED, SCHEDULE, Every, schedule_seed

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_beat", stdout=out)
    return out.getvalue()


def test_an_empty_database_gets_every_entry_once_and_a_second_run_changes_nothing() -> None:
    PeriodicTask.objects.all().delete()
    first = seed()
    assert first.count("created  ") == len(SCHEDULE) and first.endswith(f"{len(SCHEDULE)} changed\n")
    for entry in SCHEDULE:
        row = PeriodicTask.objects.get(name=entry.name)
        assert (row.task, row.queue, row.expire_seconds, row.enabled) == (entry.task.name, entry.queue,
                                                                          entry.expires, True)
        assert isinstance(entry.when, Every) and row.interval.every == entry.when.seconds
    assert seed() == f"beat schedule: {len(SCHEDULE)} entries, 0 changed\n"
    assert PeriodicTask.objects.count() == len(SCHEDULE)


def test_the_entries_name_the_tasks_by_their_task_objects() -> None:
    drain = next(e for e in SCHEDULE if e.task is tasks.sync_drain_outbox)
    assert drain.task.name == "gateway.tasks.sync_drain_outbox" and drain.queue == "sync"
    assert "gateway.tasks.usage_consume" not in {e.task.name for e in SCHEDULE}  # a worker starts it


def test_an_entry_that_differs_is_updated_and_one_an_admin_disabled_stays_disabled() -> None:
    seed()
    entry = SCHEDULE[0]
    row = PeriodicTask.objects.get(name=entry.name)
    row.interval, _ = IntervalSchedule.objects.get_or_create(every=999, period="seconds")
    row.queue, row.enabled = "evals", False
    row.save()
    assert f"updated  {entry.name} (queue, interval)" in seed()
    row.refresh_from_db()
    assert (row.interval.every, row.queue, row.enabled) == (entry.when.seconds, entry.queue, False)


def test_a_renamed_task_is_followed() -> None:
    seed()
    moved = replace(SCHEDULE[0], task=tasks.sync_purge_outbox)
    assert schedule_seed(entries=(moved, *SCHEDULE[1:])) == [f"updated  {moved.name} (task)"]
    assert PeriodicTask.objects.get(name=moved.name).task == "gateway.tasks.sync_purge_outbox"


def test_only_the_portals_own_entries_are_removed() -> None:
    seed()
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.create(name="evals: schedule 7", task="evals.tasks.run_schedule", interval=every)
    PeriodicTask.objects.create(name="an operator's own", task="somewhere.else", interval=every)
    PeriodicTask.objects.create(name="gateway: something retired", task="gateway.tasks.gone", interval=every,
                                description=OWN)
    PeriodicTask.objects.create(name=RETIRED[0], task="gateway.tasks.usage_consume", interval=every)  # a migration's
    out = seed()
    assert "removed  gateway: something retired (gateway.tasks.gone)" in out
    assert f"removed  {RETIRED[0]} (gateway.tasks.usage_consume)" in out
    left = set(PeriodicTask.objects.values_list("name", flat=True))
    assert left == {e.name for e in SCHEDULE} | {"evals: schedule 7", "an operator's own"}
