"""Langfuse metrics for the project dashboard: fetched by a task, cached in Redis; a page only reads.

`fetch` asks the project's Langfuse (metrics API v2 on v4 servers, v1 on v3, through
`LangfuseClient.metrics`) for per-day trace counts, latency (p50/p95), cost and tokens, and the
mean of each numeric score per day, over a window of UTC days. `refresh` runs it and stores the
answer under the project and window (`cached` reads it back); a failed fetch keeps the last good
answer and records the error beside it. `request_refresh` queues the task at most once a
minute per project and window (a Redis `SET NX` marker), and at most PROJECT_REFRESHES_PER_GUARD
windows per project a minute (a counter), so neither reloads nor the refresh button can flood a
tenant's Langfuse or the evals queue. The schedule (portal/schedule.py) refreshes the default
window of every enabled connection.

Layout (Redis, JSON values): `portal:lf-metrics:v1:<project id>:<start>:<end>` the answer,
`...:queued` the marker."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any
from urllib.parse import quote, urlencode

from celery import shared_task

from evals.langfuse_client.errors import LangfuseError
from evals.models import LangfuseConnection
from gateway.redis_connection import redis_client

log = logging.getLogger(__name__)

PREFIX = "portal:lf-metrics:v1"
CACHE_SECONDS = 7 * 86400  # an answer is kept this long; it is shown with its age
STALE_SECONDS = 900  # a page older than this asks for a refresh (the schedule's period too)
QUEUE_GUARD_SECONDS = 60
PROJECT_REFRESHES_PER_GUARD = 5  # windows one project may queue per QUEUE_GUARD_SECONDS
DEFAULT_DAYS = 30
MAX_DAYS = 366


def _key(project_id: int, start: dt.date, end: dt.date) -> str:
    return f"{PREFIX}:{project_id}:{start.isoformat()}:{end.isoformat()}"


def window(days: int, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    end = today or dt.datetime.now(dt.UTC).date()
    return end - dt.timedelta(days=days - 1), end


def _bounds(start: dt.date, end: dt.date) -> tuple[str, str]:
    begin = dt.datetime.combine(start, dt.time(), dt.UTC)
    stop = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return begin.strftime("%Y-%m-%dT%H:%M:%S.000Z"), stop.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def queries(api: str, start: dt.date, end: dt.date) -> dict[str, dict[str, Any]]:
    """The metrics queries, in Langfuse's names. On v4 (metrics v2) traces are the semantic-root
    observations (the v2 API has no traces view); cost and tokens sum every observation."""
    begin, stop = _bounds(start, end)
    common = {"fromTimestamp": begin, "toTimestamp": stop, "timeDimension": {"granularity": "day"},
              "config": {"row_limit": 1000}}
    if api == "v4":
        traces = {"view": "observations", "filters": [
            {"column": "isRootObservation", "operator": "=", "value": True, "type": "boolean"}]}
        usage = {"view": "observations", "metrics": [{"measure": "totalCost", "aggregation": "sum"},
                                                     {"measure": "totalTokens", "aggregation": "sum"}]}
    else:
        traces = {"view": "traces"}
        usage = {"view": "traces", "metrics": [{"measure": "totalCost", "aggregation": "sum"},
                                               {"measure": "totalTokens", "aggregation": "sum"}]}
    traces["metrics"] = [{"measure": "count", "aggregation": "count"}, {"measure": "latency", "aggregation": "p50"},
                         {"measure": "latency", "aggregation": "p95"}]
    scores = {"view": "scores-numeric", "dimensions": [{"field": "name"}],
              "metrics": [{"measure": "value", "aggregation": "avg"}, {"measure": "count", "aggregation": "count"}]}
    return {name: {**q, **common} for name, q in (("traces", traces), ("usage", usage), ("scores", scores))}


def fetch(connection: LangfuseConnection, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Per-day rows (every day of the window, oldest first) and score trends, from Langfuse."""
    with connection.client(max_retries=1) as client:
        api = client.server().api
        answers = {name: client.metrics(q) for name, q in queries(api, start, end).items()}
    days = {(start + dt.timedelta(days=i)).isoformat(): {"traces": 0, "p50_ms": None, "p95_ms": None,
                                                         "cost": 0.0, "tokens": 0}
            for i in range((end - start).days + 1)}
    for row in answers["traces"]:
        day = days.get(str(row.get("time_dimension", ""))[:10])
        if day is not None:
            day.update(traces=int(_number(row.get("count_count")) or 0), p50_ms=_number(row.get("p50_latency")),
                       p95_ms=_number(row.get("p95_latency")))
    for row in answers["usage"]:
        day = days.get(str(row.get("time_dimension", ""))[:10])
        if day is not None:
            day.update(cost=_number(row.get("sum_totalCost")) or 0.0,
                       tokens=int(_number(row.get("sum_totalTokens")) or 0))
    scores: dict[str, dict[str, float | None]] = {}
    for row in answers["scores"]:
        name, day_label = str(row.get("name") or "score")[:100], str(row.get("time_dimension", ""))[:10]
        if day_label in days and (_number(row.get("count_count")) or 0) > 0:
            scores.setdefault(name, {})[day_label] = _number(row.get("avg_value"))
    return {"api": api, "days": [{"day": d, **v} for d, v in days.items()],
            "scores": {name: sorted(points.items()) for name, points in sorted(scores.items())[:12]}}


def cached(project_id: int, start: dt.date, end: dt.date) -> dict[str, Any] | None:
    """The stored answer (with `fetched_at`, and `error` / `error_at` after a failed refresh), or None."""
    raw = redis_client().get(_key(project_id, start, end))
    return json.loads(raw) if raw else None


def is_stale(entry: dict[str, Any] | None, now: dt.datetime | None = None) -> bool:
    """True when the last attempt (a good answer or a failure) is older than `STALE_SECONDS`: a
    failed refresh is not retried by page views for that long (the refresh button still works)."""
    attempts = [dt.datetime.fromisoformat(value) for f in ("fetched_at", "error_at") if (value := (entry or {}).get(f))]
    if not attempts:
        return True
    return ((now or dt.datetime.now(dt.UTC)) - max(attempts)).total_seconds() > STALE_SECONDS


def refresh(project_id: int, start: dt.date, end: dt.date) -> dict[str, Any] | None:
    """Fetch and store; None when the project has no enabled connection. A Langfuse error is
    stored beside the last good answer (its message says what failed, never the far side's body)."""
    connection = LangfuseConnection.objects.filter(project_id=project_id, enabled=True).first()
    key = _key(project_id, start, end)
    client = redis_client()
    client.delete(f"{key}:queued")
    if connection is None:
        return None
    now = dt.datetime.now(dt.UTC).isoformat()
    previous = cached(project_id, start, end) or {}
    try:
        entry = {**fetch(connection, start, end), "fetched_at": now, "start": start.isoformat(),
                 "end": end.isoformat(), "error": None}
    except LangfuseError as exc:
        log.info("langfuse metrics for project %s failed: %s", project_id, exc)
        entry = {**previous, "error": str(exc), "error_at": now}
    client.set(key, json.dumps(entry), ex=CACHE_SECONDS)
    return entry


def request_refresh(project_id: int, start: dt.date, end: dt.date) -> bool:
    """Queue a refresh unless one was queued in the last minute for this window, or the project has
    queued `PROJECT_REFRESHES_PER_GUARD` windows in that minute already (a custom range is any pair of
    days: without this a reload per window, even a viewer's, queued a task each); True when this call
    queued it."""
    client = redis_client()
    marker = f"{_key(project_id, start, end)}:queued"
    if not client.set(marker, "1", nx=True, ex=QUEUE_GUARD_SECONDS):
        return False
    budget = f"{PREFIX}:{project_id}:refreshes"
    count = client.incr(budget)
    if count == 1 or client.ttl(budget) < 0:  # a budget that lost its expiry would refuse for ever
        client.expire(budget, QUEUE_GUARD_SECONDS)
    if count > PROJECT_REFRESHES_PER_GUARD:
        client.delete(marker)
        return False
    try:
        refresh_metrics.delay(project_id, start.isoformat(), end.isoformat())
    except Exception:  # the broker is down: no marker may claim a task that was never queued
        redis_client().delete(marker)
        raise
    return True


def is_queued(project_id: int, start: dt.date, end: dt.date) -> bool:
    return bool(redis_client().exists(f"{_key(project_id, start, end)}:queued"))


def traces_url(connection: LangfuseConnection, day: str) -> str:
    """Langfuse's traces list of the project filtered to one UTC day (its URL filter syntax:
    `column;type;key;operator;value`, comma-separated); "" without a known Langfuse project id."""
    if not connection.langfuse_project_id:
        return ""
    begin, stop = _bounds(dt.date.fromisoformat(day), dt.date.fromisoformat(day))
    flt = f"timestamp;datetime;;>=;{quote(begin, safe='')},timestamp;datetime;;<;{quote(stop, safe='')}"
    return (f"{connection.host.rstrip('/')}/project/{quote(connection.langfuse_project_id, safe='')}/traces?"
            + urlencode({"filter": flt}))


def scores_url(connection: LangfuseConnection) -> str:
    if not connection.langfuse_project_id:
        return ""
    return f"{connection.host.rstrip('/')}/project/{quote(connection.langfuse_project_id, safe='')}/scores"


@shared_task(name="evals.dashboard_metrics.refresh_metrics", queue="evals", soft_time_limit=120, time_limit=150,
             ignore_result=True)
def refresh_metrics(project_id: int, start: str, end: str) -> None:
    """One project's window: ids and ISO dates in, the cache written."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if first <= last and (last - first).days < MAX_DAYS:
        refresh(project_id, first, last)


@shared_task(name="evals.dashboard_metrics.refresh_all_metrics", queue="evals", soft_time_limit=60, time_limit=90,
             ignore_result=True)
def refresh_all_metrics() -> int:
    """The schedule's: queue the default window of every enabled connection (one task each)."""
    start, end = window(DEFAULT_DAYS)
    queued = 0
    for project_id in LangfuseConnection.objects.filter(enabled=True).values_list("project_id", flat=True):
        queued += request_refresh(project_id, start, end)
    return queued
