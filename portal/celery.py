"""The Celery app. Queues: `sync` (pushes to the gateway), `usage` (usage
ingestion), `evals` (evaluations and benchmarks)."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def start_usage_consumer(sender: object = None, **kwargs: object) -> None:
    """A worker that serves the `usage` queue starts reading the gateway's usage
    stream at once, rather than at beat's next minute."""
    queues = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])}
    if "usage" in queues:
        app.send_task("gateway.tasks.usage_consume", queue="usage")
