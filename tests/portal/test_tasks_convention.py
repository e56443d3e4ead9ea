"""Every Celery task of the portal names its module and its queue (the convention of
portal/settings.py's Celery section): a task's name is `<python module>.<function>`, and its
decorator says which queue it runs on, so that no name-based router can go stale when a task moves."""

from __future__ import annotations

from celery import Task

from portal.celery import app

QUEUES = {"sync", "usage", "evals"}


def portal_tasks() -> dict[str, Task]:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.split(".")[0] in {"gateway", "evals", "portal"}}


def test_the_walk_finds_the_portal_tasks() -> None:
    assert {"gateway.tasks.usage_consume", "gateway.tasks.sync_drain_outbox"} <= set(portal_tasks())


def test_each_task_is_named_for_its_module_and_function() -> None:
    misnamed = {name: f"{task.run.__module__}.{task.run.__name__}" for name, task in portal_tasks().items()
                if name != f"{task.run.__module__}.{task.run.__name__}"}
    assert misnamed == {}


def test_each_task_names_its_queue() -> None:
    assert {name: getattr(task, "queue", None) for name, task in portal_tasks().items()
            if getattr(task, "queue", None) not in QUEUES} == {}
