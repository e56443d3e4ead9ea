"""Celery tasks for gateway backends that keep state of their own (the
litellm-admin mode): on the `sync` queue; each does nothing where the
backend has nothing to do (managed mode), so beat lists them in every mode.

Beat's entries are declared in portal/schedule.py: `sync_pull_spend` every
minute, `sync_expire_grace` every 5 minutes (its 15-minute look-back covers a
missed run or two)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task

from gateway import backends
from gateway.services import keys

GRACE_LOOKBACK = dt.timedelta(minutes=15)


@shared_task(name="gateway.tasks_admin.sync_pull_spend", queue="sync", soft_time_limit=120, time_limit=150,
             ignore_result=True)
def sync_pull_spend() -> int:
    """Beat: copy the gateway's recent spend logs into the portal's usage
    records. Windows overlap; records are stored once per request id."""
    return backends.backend().pull_spend()


@shared_task(name="gateway.tasks_admin.sync_expire_grace", queue="sync", soft_time_limit=60, ignore_result=True)
def sync_expire_grace() -> int:
    """Beat: stop rotated-out secrets whose grace period ended recently.
    Returns how many keys were queued for a push."""
    return keys.keys_push_ended_graces(lookback=GRACE_LOOKBACK)
