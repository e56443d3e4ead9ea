"""The push after a revocation: the key's documents and the event go to Redis in one pipeline, and
the outbox bookkeeping around it does not wait for a disk flush, without relaxing anyone else's commit."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from gateway import sync
from gateway.backends.managed import ManagedBackend
from gateway.models import SyncOutbox
from gateway.plugin import contract
from tests.factories import Tenant


@pytest.fixture
def r() -> Any:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


@pytest.mark.django_db(transaction=True)
def test_a_revocation_reaches_redis_and_every_proxy_when_redis_has_lost_its_scripts(
        acme: Tenant, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    init = ManagedBackend.__init__

    def forgetful(self: ManagedBackend, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._set.sha = "0" * 40  # what a restarted Redis answers to the cached script: NOSCRIPT

    monkeypatch.setattr(ManagedBackend, "__init__", forgetful)
    events = r.pubsub(ignore_subscribe_messages=True)
    events.subscribe(contract.EVENTS)
    response = acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/revoke/"))
    assert response.status_code == 200
    assert json.loads(r.get(contract.key_doc(acme.key.pk)))["status"] == "revoked"
    assert not SyncOutbox.objects.filter(done_at=None).exists()  # pushed now, not left to the retry queue
    messages = [events.get_message(timeout=0.2) for _ in range(10)]  # the subscribe reply reads as None
    told = [json.loads(m["data"]) for m in messages if m]
    assert {"type": "key", "id": acme.key.pk} in [{k: e[k] for k in ("type", "id")} for e in told]


@pytest.mark.django_db(transaction=True)
def test_draining_the_outbox_inside_a_callers_transaction_keeps_its_commit_durable(acme: Tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    with transaction.atomic():
        sync.drain_outbox()
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"  # the caller's own changes still wait for the disk
