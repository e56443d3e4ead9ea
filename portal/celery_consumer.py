"""The workers' Celery consumer (settings.CELERY_WORKER_CONSUMER): Celery's own,
with one repair so that a worker survives its broker going away.

Celery 5.7.0 / kombu 5.7.0, Redis broker: when the broker's connection drops while
the worker holds an unacknowledged message (an `acks_late` task is running, as the
usage consumer always is), `on_connection_error_after_connected` first collects the
connection (which detaches kombu's transport from it) and then closes it again. The
second close tries to requeue the unacknowledged messages through the detached
transport and raises `AttributeError: 'NoneType' object has no attribute 'hostname'`,
which Celery treats as unrecoverable: the worker stops consuming and exits once its
running tasks end (tests/e2e/test_faults.py reproduces it with a Redis restart).

The repair only concerns the connection being thrown away: its close tolerates that
error. The messages it could not requeue stay in Redis's unacked set, and kombu puts
them back on their queue when their visibility timeout ends, as after a worker crash.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


def close_tolerating_detached_transport(connection: Any) -> None:
    try:
        connection.release()
    except AttributeError as exc:
        logger.warning("broker connection lost while tasks were running; their messages could not be requeued "
                       "now (%s) and return to their queue when kombu's visibility timeout ends", exc)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        if connection is not None:
            # Celery calls `connection.close` on the lost connection: this instance's close is ours.
            connection.close = lambda: close_tolerating_detached_transport(connection)
        super().on_connection_error_after_connected(exc)
