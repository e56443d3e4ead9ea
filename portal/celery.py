"""The Celery app. Queues: `sync` (pushes to the gateway), `usage` (usage
ingestion), `evals` (evaluations and benchmarks); each task names its own
(gateway/tasks.py, evals/tasks*.py). Beat's schedule: portal/schedule.py,
seeded by `manage.py seed_beat`. The usage consumer: started by the worker,
below."""

import logging.config
import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import setup_logging, worker_ready

from portal.config import load_settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
if Path(sys.argv[0]).name == "celery" or sys.argv[0].endswith("celery/__main__.py"):
    # The celery command (worker, beat, inspect): a missing or malformed setting is one line on stderr and
    # exit 2 before Celery starts, not a traceback. Imported by anything else (manage.py, the WSGI app), the
    # settings stay lazy and that entry point reports the error.
    load_settings_or_exit(2)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


CONSUMER_WATCH_SECONDS = 30.0


@setup_logging.connect
def use_portal_logging(**kwargs: object) -> None:
    """Workers and beat log as the web does (settings.LOGGING: LOG_FORMAT, LOG_LEVEL, the request id on
    every line of a task queued by a request), not in Celery's own format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


def serves(consumer: object, queue: str) -> bool:
    return queue in {q.name for q in getattr(getattr(consumer, "task_consumer", None), "queues", [])}


@worker_ready.connect
def keep_usage_consumer(sender: object = None, **kwargs: object) -> None:
    """The one way the usage consumer starts: a worker that serves the `usage`
    queue starts it when it is ready (so usage flows from the worker's first
    second), and checks every half minute that one is still running (each
    consumer hands over to the next; this restarts a chain that broke)."""
    if not serves(sender, "usage"):
        return
    from gateway.tasks import usage_consumer_start

    usage_consumer_start(unless_running=False)
    timer = getattr(sender, "timer", None)
    if timer is not None:
        timer.call_repeatedly(CONSUMER_WATCH_SECONDS, usage_consumer_start, kwargs={"unless_running": True})
