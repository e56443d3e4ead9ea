"""Celery tasks of the gateway. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task

from gateway import sync


@shared_task(name="gateway.tasks.sync_drain_outbox", soft_time_limit=60, ignore_result=True)
def sync_drain_outbox() -> int:
    """Retry the pushes that did not reach the gateway right after commit."""
    return sync.drain_outbox()


@shared_task(name="gateway.tasks.sync_purge_outbox", soft_time_limit=120, ignore_result=True)
def sync_purge_outbox() -> int:
    return sync.purge_done()
