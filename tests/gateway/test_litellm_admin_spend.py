"""Spend back from LiteLLM: its spend logs become usage records, once each;
the backend's beat tasks."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.utils import timezone

from gateway import tasks_admin
from gateway.backends.litellm_admin import spend
from gateway.models import UsageDaily, UsageRecord
from tests.factories import Tenant
from tests.gateway.litellm_admin_fake import FakeLiteLLM, admin_backend, fake, sha

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["fake"]  # a fixture


def test_pull_spend_turns_spend_logs_into_usage_records_once(fake: FakeLiteLLM, acme: Tenant) -> None:
    now, token = timezone.now(), sha(acme.key_plaintext)
    log = {"api_key": token, "model": "gpt-4o-mini", "model_group": "acme/chat", "model_id": "portal-dep-1",
           "call_type": "acompletion", "startTime": (now - dt.timedelta(minutes=5)).isoformat()}
    fake.spend_logs = [
        log | {"request_id": "req-ok", "spend": 0.0021, "prompt_tokens": 10, "completion_tokens": 5,
               "status": "success", "request_duration_ms": 321, "metadata": {}},
        log | {"request_id": "req-err", "spend": 0, "status": "failure", "request_duration_ms": 12,
               "metadata": json.dumps({"error_information": {"error_code": "429", "error_class": "RateLimitError"}})},
        log | {"request_id": "req-foreign", "api_key": "e" * 64, "spend": 1, "status": "success"},
        log | {"request_id": "req-old", "spend": 1, "status": "success",
               "startTime": (now - dt.timedelta(days=2)).isoformat()},
    ]
    since = now - dt.timedelta(hours=1)
    assert admin_backend().pull_spend(since) == 2
    assert admin_backend().pull_spend(since) == 0 and UsageRecord.objects.count() == 2
    ok, err = UsageRecord.objects.get(request_id="req-ok"), UsageRecord.objects.get(request_id="req-err")
    assert (ok.key_id, ok.organization_id, ok.team_id, ok.project_id) == (acme.key.pk, acme.org.pk, acme.team.pk,
                                                                          acme.project.pk)
    assert (ok.route, ok.model_group, ok.deployment, ok.provider_model) == ("chat", "acme/chat", "portal-dep-1",
                                                                            "gpt-4o-mini")
    assert (ok.prompt_tokens, ok.completion_tokens, float(ok.cost), ok.latency_ms) == (10, 5, 0.0021, 321.0)
    assert (ok.status, ok.owner_email) == ("success", "member@acme.test")
    assert (err.status, err.status_code, err.error_class) == ("error", 429, "RateLimitError")
    daily = UsageDaily.objects.get(key_id=acme.key.pk)
    assert (daily.requests, daily.errors, daily.prompt_tokens) == (2, 1, 10)
    params = fake.calls[-1].params
    assert params["sort_order"] == "asc" and params["start_date"] == since.strftime("%Y-%m-%d %H:%M:%S")


def test_pull_spend_pages_through_and_knows_rotated_out_secrets(fake: FakeLiteLLM, acme: Tenant,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spend, "SPEND_PAGE_SIZE", 2)
    old = sha(acme.key_plaintext)
    acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": 60}, format="json")
    start = timezone.now() - dt.timedelta(minutes=10)
    fake.spend_logs = [{"request_id": f"r{i}", "api_key": old, "model_group": "acme/chat", "spend": 0.5,
                        "status": "success", "startTime": (start + dt.timedelta(seconds=i)).isoformat()}
                       for i in range(5)]
    assert admin_backend().pull_spend(start - dt.timedelta(minutes=1)) == 5
    assert [c.params["page"] for c in fake.calls if c.path == "/spend/logs/v2"] == ["1", "2", "3"]
    assert set(UsageRecord.objects.values_list("key_id", flat=True)) == {acme.key.pk}


def test_the_admin_tasks_do_nothing_in_managed_mode(settings: Any, db: Any) -> None:
    settings.GATEWAY_MODE = "managed"
    assert tasks_admin.sync_pull_spend() == 0 and tasks_admin.sync_expire_grace() == 0
    assert tasks_admin.sync_pull_spend.name == "gateway.tasks_admin.sync_pull_spend"
    assert tasks_admin.sync_expire_grace.name == "gateway.tasks_admin.sync_expire_grace"
