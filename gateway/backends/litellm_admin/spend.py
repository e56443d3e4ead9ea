"""Spend back from LiteLLM: its spend logs become the portal's usage records,
as the plugin's usage events would have."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.utils import timezone

from gateway import usage
from gateway.backends.litellm_admin.client import JSON, AdminClient
from gateway.models import KeyGraceHash, VirtualKey
from gateway.plugin import contract

SPEND_PAGE_SIZE = 1000  # the most /spend/logs/v2 serves per page
PULL_WINDOW = dt.timedelta(minutes=30)  # LiteLLM writes spend logs in batches, up to a minute or so late


def pull_spend(client: AdminClient, since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
    """Store LiteLLM's spend logs since `since` (by default the last
    `PULL_WINDOW`) as usage records (once per request id, so overlapping
    windows are harmless). Uses `/spend/logs/v2`: `/spend/logs` is deprecated,
    filters by whole days and returns at most 10,000 rows with their full
    prompts. Returns how many records were new."""
    now = timezone.now()
    since, until = since or now - PULL_WINDOW, until or now + dt.timedelta(minutes=1)
    window = {"start_date": _litellm_time(since), "end_date": _litellm_time(until), "page_size": SPEND_PAGE_SIZE,
              "sort_by": "startTime", "sort_order": "asc"}
    stored, page = 0, 1
    while True:  # not up to `total_pages`: LiteLLM caps the total it counts at 10,000
        logs = [row for row in client.get("/spend/logs/v2", page=page, **window).get("data") or []
                if isinstance(row, dict)]
        events = spend_events(logs)
        stored += usage.store(events) if events else 0
        if len(logs) < SPEND_PAGE_SIZE:
            return stored
        page += 1


def _litellm_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def spend_events(logs: list[JSON]) -> list[JSON]:
    """Spend logs as the plugin's usage events; logs of keys the portal does
    not know (LiteLLM's own keys, deleted keys) are skipped."""
    owners = _keys_by_hash({str(row.get("api_key") or "") for row in logs} - {""})
    return [_event(row, owners[row["api_key"]]) for row in logs if row.get("api_key") in owners]


def _keys_by_hash(hashes: set[str]) -> dict[str, VirtualKey]:
    keys = {k.key_hash: k for k in VirtualKey.objects.filter(key_hash__in=hashes).select_related("organization",
                                                                                                  "owner")}
    graces = KeyGraceHash.objects.filter(key_hash__in=hashes - keys.keys()).select_related("key__organization",
                                                                                            "key__owner")
    return keys | {g.key_hash: g.key for g in graces}


def _event(row: JSON, key: VirtualKey) -> JSON:
    group = str(row.get("model_group") or row.get("model") or "")
    slug = f"{key.organization.slug}/"
    error = _error_information(row.get("metadata"))
    failed = row.get("status") not in (None, "", "success")
    return {
        "request_id": str(row["request_id"]), "ts": _timestamp(row.get("startTime")), "key_id": key.pk,
        "key_hash": row["api_key"], "org": key.organization_id, "team": key.team_id, "project": key.project_id,
        "owner": key.owner.email if key.owner else None, "route": group.removeprefix(slug), "group": group,
        "deployment": str(row.get("model_id") or ""), "provider_model": str(row.get("model") or ""),
        "prompt_tokens": int(row.get("prompt_tokens") or 0), "completion_tokens": int(row.get("completion_tokens") or 0),
        "cost_nano": round(float(row.get("spend") or 0) * contract.NANO),
        "latency_ms": float(row.get("request_duration_ms") or 0), "status": "error" if failed else "success",
        "status_code": _int(error.get("error_code"), 500 if failed else 200),
        "error_class": str(error.get("error_class") or "") if failed else "", "trace_id": "",
    }


def _error_information(metadata: Any) -> JSON:
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return {}
    info = metadata.get("error_information") if isinstance(metadata, dict) else None
    return info if isinstance(info, dict) else {}


def _timestamp(value: Any) -> float:
    moment = dt.datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
