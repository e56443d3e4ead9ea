"""Celery tasks of the litellm-admin mode (`GATEWAY_MODE = "litellm-admin"`).
Named `gateway.tasks.sync_*` so that they run on the `sync` queue; each does
nothing in managed mode, so the beat schedule may list them in both modes.

Suggested beat schedule: `sync_pull_spend` every minute, `sync_expire_grace`
every 5 minutes (its 15-minute look-back covers a missed run or two)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gateway import changes, litellm_admin
from gateway.models import KeyGraceHash

PULL_WINDOW = dt.timedelta(minutes=30)  # LiteLLM writes spend logs in batches, up to a minute or so late
GRACE_LOOKBACK = dt.timedelta(minutes=15)


def _admin_mode() -> bool:
    return settings.GATEWAY_MODE == "litellm-admin"


@shared_task(name="gateway.tasks.sync_pull_spend", soft_time_limit=120, time_limit=150, ignore_result=True)
def sync_pull_spend() -> int:
    """Beat: copy LiteLLM's recent spend logs into the portal's usage
    records. Windows overlap; records are stored once per request id."""
    if not _admin_mode():
        return 0
    return litellm_admin.pull_spend(timezone.now() - PULL_WINDOW)


@shared_task(name="gateway.tasks.sync_expire_grace", soft_time_limit=60, ignore_result=True)
def sync_expire_grace() -> int:
    """Beat: a rotated-out secret stops working in LiteLLM only when it is
    deleted there, which the next push of its key does; so queue a push of
    every key whose grace period ended recently (through the outbox, which
    retries). Returns how many keys were queued."""
    if not _admin_mode():
        return 0
    now = timezone.now()
    ended = KeyGraceHash.objects.filter(expires_at__lte=now, expires_at__gt=now - GRACE_LOOKBACK)
    key_ids = sorted(set(ended.values_list("key_id", flat=True)))
    with transaction.atomic():
        for key_id in key_ids:
            changes.key_changed(key_id)
    return len(key_ids)
