"""Celery tasks of the gateway, on the `sync` and `usage` queues. Thin: each\ncalls one service. Beat runs the `sync_*` ones (portal/schedule.py); a\nworker keeps one usage consumer running (`usage_consumer_start`)."""

from __future__ import annotations

import redis
from celery import Task, shared_task

from gateway import sync, tasks_admin, usage  # noqa: F401  (tasks_admin: the litellm-admin mode's tasks)


@shared_task(name="gateway.tasks.sync_drain_outbox", queue="sync", soft_time_limit=60, ignore_result=True)
def sync_drain_outbox() -> int:
    """Retry the pushes that did not reach the gateway right after commit."""
    return sync.drain_outbox()


@shared_task(name="gateway.tasks.sync_purge_outbox", queue="sync", soft_time_limit=120, ignore_result=True)
def sync_purge_outbox() -> int:
    return sync.purge_done()


@shared_task(name="gateway.tasks.sync_ensure_state", queue="sync", soft_time_limit=120, ignore_result=True)
def sync_ensure_state() -> bool:
    """Beat, every few seconds: re-push everything if Redis lost it."""
    return sync.ensure_state_loaded()


@shared_task(name="gateway.tasks.usage_consume", queue="usage", bind=True, soft_time_limit=75, time_limit=90,
             ignore_result=True)
def usage_consume(self: Task, seconds: float = 58.0) -> int:
    """Read the gateway's usage stream for about a minute, then hand over to
    the next consumer, so that usage shows in the portal within a second or so.
    One consumer runs at a time (a lock that lapses 10 s after a consumer dies).
    Only a worker starts one (`usage_consumer_start`); beat has no entry for it."""
    r = sync.redis_client()
    if not usage.take_consumer_lock(r, self.request.id or "local"):
        return 0
    try:
        return usage.consume(r, seconds=seconds, lock_owner=self.request.id or "local")
    finally:
        usage.release_consumer_lock(r, self.request.id or "local")
        usage_consume.apply_async()


def usage_consumer_start(*, unless_running: bool) -> bool:
    """Queue a usage consumer; with `unless_running`, only when none holds the
    consumer lock. True when one was queued. A worker serving `usage` calls it
    when it is ready (unconditionally: the consumer it queues waits for a dead
    one's lock to lapse) and then every half minute, to restart a hand-over
    chain that broke (a consumer killed by its hard time limit, a broker that
    refused the hand-over) - portal/celery.py."""
    if unless_running:
        try:
            if sync.redis_client().exists(usage.CONSUMER_LOCK):
                return False
        except redis.RedisError:
            return False  # the consumer waits Redis out itself; nothing to restart
    usage_consume.apply_async()
    return True
