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


def test_the_rows_the_old_data_migrations_made_are_adopted() -> None:
    """A database that ran the old beat migrations (evals 0003, gateway 0003, 0005, 0006; now no-ops)
    keeps their rows, with the task names of then and no description: they are adopted by name, take
    the tasks' names of now, and the retired consumer goes; nothing is created twice."""
    PeriodicTask.objects.all().delete()
    old = [  # name, task, every, queue, expires: as those migrations wrote them
        ("gateway: retry pushes to the gateway", "gateway.tasks.sync_drain_outbox", 15, "sync", 14),
        ("gateway: re-push state Redis lost", "gateway.tasks.sync_ensure_state", 5, "sync", 4),
        ("gateway: consume usage", "gateway.tasks.usage_consume", 50, "usage", 45),
        ("gateway: purge pushed outbox rows", "gateway.tasks.sync_purge_outbox", 86400, "sync", 3600),
        ("gateway: pull spend from LiteLLM (litellm-admin)", "gateway.tasks.sync_pull_spend", 60, "sync", 55),
        ("gateway: delete rotated-out keys in LiteLLM (litellm-admin)", "gateway.tasks.sync_expire_grace", 300,
         "sync", 290),
        ("evals: fail runs whose worker was lost", "evals.tasks.fail_stuck_runs", 600, "evals", 590),
    ]
    for name, task, every, queue, expires in old:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.create(name=name, task=task, interval=interval, queue=queue, expire_seconds=expires,
                                    enabled=True)
    pks = dict(PeriodicTask.objects.values_list("name", "pk"))
    out = seed()
    added = [e for e in SCHEDULE if e.name not in pks]  # entries that came after those migrations
    assert out.count("created  ") == len(added) and all(f"created  {e.name} (" in out for e in added)
    assert "removed  gateway: consume usage (gateway.tasks.usage_consume)" in out
    assert "updated  gateway: pull spend from LiteLLM (litellm-admin) (task, description)" in out
    assert "updated  gateway: delete rotated-out keys in LiteLLM (litellm-admin) (task, description)" in out
    assert "updated  gateway: retry pushes to the gateway (description)" in out
    for entry in SCHEDULE:
        row = PeriodicTask.objects.get(name=entry.name)
        assert entry in added or row.pk == pks[entry.name]  # the same row: beat keeps its last run
        assert (row.task, row.queue, row.expire_seconds, row.description) == (entry.task.name, entry.queue,
                                                                              entry.expires, OWN)
    assert PeriodicTask.objects.count() == len(SCHEDULE)
    assert seed() == f"beat schedule: {len(SCHEDULE)} entries, 0 changed\n"
