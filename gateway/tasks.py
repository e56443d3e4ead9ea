"""Celery tasks of the gateway. Thin: each calls one service."""

from __future__ import annotations

from celery import Task, shared_task

from gateway import sync, tasks_admin, usage  # noqa: F401  (tasks_admin: the litellm-admin mode's tasks)


@shared_task(name="gateway.tasks.sync_drain_outbox", soft_time_limit=60, ignore_result=True)
def sync_drain_outbox() -> int:
    """Retry the pushes that did not reach the gateway right after commit."""
    return sync.drain_outbox()


@shared_task(name="gateway.tasks.sync_purge_outbox", soft_time_limit=120, ignore_result=True)
def sync_purge_outbox() -> int:
    return sync.purge_done()


@shared_task(name="gateway.tasks.sync_ensure_state", soft_time_limit=120, ignore_result=True)
def sync_ensure_state() -> bool:
    """Beat, every few seconds: re-push everything if Redis lost it."""
    return sync.ensure_state_loaded()


@shared_task(name="gateway.tasks.usage_consume", bind=True, soft_time_limit=75, time_limit=90, ignore_result=True)
def usage_consume(self: Task, seconds: float = 58.0) -> int:
    """Read the gateway's usage stream for about a minute, then hand over to
    the next consumer, so that usage shows in the portal within a second or so.
    One consumer runs at a time (a lock that lapses 10 s after a consumer dies);
    a worker starts one when it comes up, and beat every 50 s in case the
    chain broke."""
    r = sync.redis_client()
    if not usage.take_consumer_lock(r, self.request.id or "local"):
        return 0
    try:
        return usage.consume(r, seconds=seconds, lock_owner=self.request.id or "local")
    finally:
        usage.release_consumer_lock(r, self.request.id or "local")
        usage_consume.apply_async(queue="usage")
