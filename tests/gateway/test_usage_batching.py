"""The usage consumer batches: events that trickle in while it waits go into one transaction."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis
from django.conf import settings

from gateway import usage
from gateway.models import UsageRecord
from gateway.plugin import contract
from tests.factories import Tenant
from tests.gateway.test_usage import event


@pytest.mark.django_db(transaction=True)
def test_events_trickling_in_are_stored_in_one_batch_not_one_each(acme: Tenant, monkeypatch: Any) -> None:
    r = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    r.delete(contract.USAGE_STREAM)
    batches: list[int] = []
    store = usage.store
    monkeypatch.setattr(usage, "store", lambda events: batches.append(len(events)) or store(events))
    monkeypatch.setattr(usage, "BATCH_WAIT_MS", 1000)  # longer than the trickle, however busy the machine
    reader = usage.Consumer(r, "test", batch=1000, block_ms=500, lock_owner=None, retry_own=False)
    usage.ensure_groups(r)
    r.xadd(contract.USAGE_STREAM, {"event": json.dumps(event(acme))})

    def trickle() -> None:  # a request every 3 ms, as under light load
        for _ in range(40):
            time.sleep(0.003)
            r.xadd(contract.USAGE_STREAM, {"event": json.dumps(event(acme))})

    feeder = threading.Thread(target=trickle)
    feeder.start()
    deadline = time.monotonic() + 10
    while sum(batches) < 41 and time.monotonic() < deadline:
        reader.step()  # the first event alone, then it waits for the others to gather
    feeder.join()
    assert sum(batches) == 41 and batches[0] == 1
    assert len(batches) <= 2, f"one transaction per few events: {batches}"  # without the wait: 7 here
    assert UsageRecord.objects.filter(key=acme.key).count() == 41
    assert r.xlen(contract.USAGE_STREAM) == 0
