"""Pushing the portal's state to the gateway, whichever backend serves it
(`gateway.backends`).

Changes land in the `SyncOutbox` inside their own transaction. Right after
commit the web process pushes them (so a revocation reaches every proxy in
milliseconds); whatever fails stays in the outbox and the `sync` queue
retries it with backoff. `backend().push_all()` pushes everything (`gateway_sync`)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from gateway.backends import Backend, backend
from gateway.models import SyncKind, SyncOutbox
from gateway.redis_connection import redis_client
from portal import metrics

log = logging.getLogger(__name__)
MAX_BACKOFF = dt.timedelta(minutes=10)
_local = threading.local()


def _due(now: dt.datetime) -> Any:
    return SyncOutbox.objects.filter(done_at=None).exclude(next_attempt_at__gt=now)


def process(rows: Iterable[SyncOutbox], push: Backend | None = None) -> int:
    """Push each change once (several changes of one object in one go);
    failures back off exponentially. Returns how many were pushed."""
    push = push or backend()
    pushed = 0
    now = timezone.now()
    seen: dict[tuple[str, int], list[int]] = {}
    for row in rows:
        seen.setdefault((row.kind, row.object_id), []).append(row.pk)
    for (kind, object_id), ids in seen.items():
        try:
            push.push(kind, object_id)
        except Exception as exc:  # the row stays, retried later
            attempts = SyncOutbox.objects.filter(pk__in=ids).values_list("attempts", flat=True)
            n = max(attempts, default=0) + 1
            delay = min(dt.timedelta(seconds=2 ** min(n, 10)), MAX_BACKOFF)
            SyncOutbox.objects.filter(pk__in=ids).update(attempts=n, next_attempt_at=now + delay,
                                                         last_error=f"{type(exc).__name__}: {exc}"[:500])
            log.warning("gateway push of %s %s failed (attempt %s): %s", kind, object_id, n, type(exc).__name__)
            metrics.gateway_push(kind, ok=False)
        else:
            SyncOutbox.objects.filter(pk__in=ids, done_at=None).update(done_at=timezone.now())
            metrics.gateway_push(kind, ok=True)
            pushed += 1
    return pushed


def _commit_without_flush() -> None:
    """This transaction's commit does not wait for PostgreSQL to flush its log to disk (~6 ms here,
    paid by every revocation's API call after its push). Safe: it only marks outbox rows done; were
    the marks lost in a crash, the rows are pushed again, and a push is idempotent. The change itself
    committed durably in its own transaction before."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def drain_outbox(limit: int = 500) -> int:
    """Push what is due. Rows are claimed with SKIP LOCKED, so several
    workers (and web processes) never push the same row at once."""
    outermost = not connection.in_atomic_block  # never relax a caller's transaction
    with transaction.atomic():
        if outermost:
            _commit_without_flush()
        rows = list(_due(timezone.now()).order_by("pk").select_for_update(skip_locked=True)[:limit])
        return process(rows)


def drain_outbox_soon() -> None:
    """Called right after a commit that wrote to the outbox: push now, in
    this process; if Redis is unreachable the `sync` queue retries later."""
    if getattr(_local, "draining", False):
        return
    _local.draining = True
    try:
        drain_outbox()
    except Exception as exc:
        log.warning("immediate gateway push failed, left to the sync queue: %s", type(exc).__name__)
    finally:
        _local.draining = False


def ensure_state_loaded() -> bool:
    """After the gateway lost its state (Redis restarted without
    persistence), push everything again. Returns whether it had to."""
    return backend().ensure_state()


def purge_done(older_than: dt.timedelta = dt.timedelta(days=7)) -> int:
    deleted, _ = SyncOutbox.objects.filter(done_at__lt=timezone.now() - older_than).delete()
    return deleted


__all__ = ["Backend", "SyncKind", "backend", "drain_outbox", "drain_outbox_soon", "ensure_state_loaded", "process",
           "purge_done", "redis_client"]
