"""Usage ingestion (stream -> records and daily rollups) and the usage API."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db.models import Sum

from gateway import usage
from gateway.models import UsageDaily, UsageRecord
from gateway.plugin import contract
from portal import services
from portal.access import actor_for_user, system_actor
from tests.factories import Tenant


def event(t: Tenant, *, key: Any = None, route: str = "chat", cost_nano: int = 1_000_000, status: str = "success",
          ts: float | None = None, request_id: str | None = None) -> dict[str, Any]:
    key = key or t.key
    return {"request_id": request_id or uuid.uuid4().hex, "ts": ts or time.time(), "key_id": key.pk,
            "key_hash": key.key_hash, "org": t.org.pk, "team": key.team_id, "project": key.project_id,
            "owner": key.owner.email if key.owner else None, "route": route, "group": f"{t.org.slug}/{route}",
            "deployment": "dep-1", "provider_model": "gpt-4o-mini", "prompt_tokens": 10, "completion_tokens": 20,
            "cost_nano": cost_nano, "latency_ms": 100.0, "status": status,
            "status_code": 200 if status == "success" else 500, "error_class": "" if status == "success" else "X",
            "trace_id": ""}


@pytest.fixture
def r() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


@pytest.mark.django_db
def test_stream_events_become_records_and_rollups_once(acme: Tenant, r: redis.Redis) -> None:
    events = [event(acme) for _ in range(5)]
    for e in events + events[:2]:  # two redeliveries of the same requests
        r.xadd(contract.USAGE_STREAM, {"event": json.dumps(e)})
    r.xadd(contract.USAGE_STREAM, {"event": "not json"})
    assert usage.drain(r) == 5
    assert UsageRecord.objects.count() == 5
    daily = UsageDaily.objects.get(key=acme.key)
    assert daily.requests == 5 and daily.cost * contract.NANO == 5_000_000 and daily.prompt_tokens == 50
    assert r.xlen(contract.USAGE_STREAM) == 0  # acknowledged and removed, the malformed entry too
    acme.key.refresh_from_db()
    assert acme.key.last_used_at is not None


@pytest.mark.django_db
def test_usage_api_groups_by_every_dimension(acme: Tenant) -> None:
    yesterday = time.time() - 86400
    usage.store([event(acme), event(acme, route="code", cost_nano=5_000_000), event(acme, status="error"),
                 event(acme, ts=yesterday)])
    client = acme.client("owner")
    by_day = client.get(acme.url("usage/"), {"group_by": "day"}).json()
    assert [r["requests"] for r in by_day["results"]] == [1, 3]
    assert by_day["totals"]["requests"] == 4 and by_day["totals"]["errors"] == 1
    assert by_day["totals"]["cost"] == pytest.approx(0.008)
    by_route = client.get(acme.url("usage/"), {"group_by": "route"}).json()["results"]
    assert [(r["group"], r["requests"]) for r in by_route] == [("code", 1), ("chat", 3)]  # by cost, descending
    for group_by, label in (("key", "acme member key"), ("project", "acme-assistant"), ("team", "acme-platform"),
                            ("user", "member@acme.test")):
        rows = client.get(acme.url("usage/"), {"group_by": group_by}).json()["results"]
        assert [r["label"] for r in rows] == [label], group_by
    today = dt.date.today().isoformat()
    only_today = client.get(acme.url("usage/"), {"group_by": "day", "from": today, "to": today}).json()
    assert only_today["totals"]["requests"] == 3
    assert client.get(acme.url("usage/"), {"group_by": "key", "route": "code"}).json()["totals"]["requests"] == 1


@pytest.mark.django_db
def test_usage_is_per_tenant_and_members_see_their_teams(acme: Tenant, globex: Tenant) -> None:
    usage.store([event(acme), event(globex), event(globex)])
    assert acme.client("viewer").get(acme.url("usage/")).json()["totals"]["requests"] == 1
    assert globex.client("viewer").get(globex.url("usage/")).json()["totals"]["requests"] == 2
    assert globex.client("owner").get(acme.url("usage/")).status_code == 404
    # a key of a team the member is not in stays out of the member's numbers
    other = services.team_create(actor=system_actor(acme.org, "t"), data={"name": "other"})
    project = services.project_create(actor=system_actor(acme.org, "t"), data={"name": "p2", "team": other})
    from gateway.services import keys

    hidden = keys.key_create(actor=actor_for_user(acme.org, acme.users["admin"]),
                             data={"name": "hidden", "team": other, "project": project}).key
    usage.store([event(acme, key=hidden, cost_nano=7)])
    assert acme.client("member").get(acme.url("usage/")).json()["totals"]["requests"] == 1
    assert acme.client("admin").get(acme.url("usage/")).json()["totals"]["requests"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("params,field", [
    ({"group_by": "model"}, "group_by"),
    ({"from": "2026-13-01"}, "from"),
    ({"from": "2026-05-02", "to": "2026-05-01"}, "from"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "from"),
    ({"key": "abc"}, "key"),
])
def test_usage_api_rejects_bad_queries(acme: Tenant, params: dict[str, str], field: str) -> None:
    response = acme.client("owner").get(acme.url("usage/"), params)
    assert response.status_code == 400 and field in response.json()


@pytest.mark.django_db
def test_spend_counters_come_back_from_the_database_after_redis_loses_them(acme: Tenant, r: redis.Redis) -> None:
    from gateway import sync

    acme.client("owner").patch(acme.url(f"keys/{acme.key.pk}/"), {"max_budget": 10, "budget_period": "monthly"},
                               format="json")
    usage.store([event(acme, cost_nano=2_500_000_000), event(acme, cost_nano=500_000_000)])
    r.flushdb()  # Redis restarted without persistence
    assert sync.ensure_state_loaded() is True
    label = contract.period_start("monthly", dt.datetime.now(dt.UTC))
    assert int(r.get(contract.budget_keys("key", acme.key.pk, label)[0])) == 3 * contract.NANO
    assert sync.ensure_state_loaded() is False  # loaded now: nothing to do
    total = UsageDaily.objects.filter(key=acme.key).aggregate(s=Sum("cost"))["s"]
    assert total * contract.NANO == 3 * contract.NANO
