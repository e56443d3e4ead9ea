"""Celery tasks of the gateway. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task

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


@shared_task(name="gateway.tasks.usage_consume", soft_time_limit=70, time_limit=90, ignore_result=True)
def usage_consume(seconds: float = 55.0) -> int:
    """Beat, every minute: read the gateway's usage stream for about a
    minute, so usage shows in the portal within a second or so."""
    return usage.consume(sync.redis_client(), seconds=seconds)
