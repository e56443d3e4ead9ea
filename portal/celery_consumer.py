"""The workers' Celery consumer (settings.CELERY_WORKER_CONSUMER): Celery's own,
with one repair so that a worker survives its broker going away.

Celery 5.7.0 / kombu 5.7.0, Redis broker: when the broker's connection drops while
the worker holds an unacknowledged message (an `acks_late` task is running, as the
usage consumer always is), `on_connection_error_after_connected` collects the lost
connection, which detaches kombu's transport from its channel. Two later uses of
that channel then raise `AttributeError: 'NoneType' object has no attribute
'hostname'`, which Celery treats as unrecoverable (the worker stops consuming and
exits once its running tasks end):
- closing the connection again, which tries to requeue the unacknowledged messages;
- acknowledging (or rejecting) a task that was received on the lost connection and
  ends after the worker reconnected.

The repair only concerns the lost connection: its close, and the acks and rejects on
its channel, are skipped with a warning. Those messages stay in Redis's unacked set
and kombu puts them back on their queue when their visibility timeout ends, as after
a worker crash: at-least-once, as `acks_late` promises (the tasks are idempotent:
runs claim their units, usage is stored once per request id). On an AMQP broker the
broker requeues them at once and Celery logs the failed ack; this is the same thing
for Redis. tests/e2e/test_faults.py restarts a worker's Redis under a running task.
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


def retire(channel: Any) -> None:
    """Acks and rejects of messages received on `channel`, a lost connection's, do nothing."""

    def skipped(delivery_tag: Any, *args: Any, **kwargs: Any) -> None:
        logger.warning("a task received before the broker connection was lost ended after it; its message "
                       "(delivery tag %s) returns to its queue when kombu's visibility timeout ends", delivery_tag)

    channel.basic_ack = skipped
    channel.basic_reject = skipped


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        # the channel the running tasks' messages came on: the task consumer's, the connection's default one
        channels = {id(c): c for c in (getattr(self.task_consumer, "channel", None),
                                       getattr(connection, "_default_channel", None)) if c is not None}
        for channel in channels.values():
            retire(channel)
        if connection is not None:
            # Celery calls `connection.close` on the lost connection: this instance's close is ours.
            connection.close = lambda: close_tolerating_detached_transport(connection)
        super().on_connection_error_after_connected(exc)
