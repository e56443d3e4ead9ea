"""Tracing endpoints: health, OTLP and batch ingestion, traces, observations, sessions."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from . import render
from .errors import ApiError
from .filters import attr_equals, matches_all, metadata_value, parse_filter_param
from .ingest import (
    create_score,
    finalize_costs,
    finalize_usage,
    normalize_usage,
    upsert_observation,
    upsert_trace,
)
from .models import Observation, Project, Trace, iso, new_id, parse_time, parse_time_or_none, utcnow
from .otel import decode_json, decode_protobuf, ingest_spans
from .routing import Ctx, Response, route

# ------------------------------------------------------------------- health


@route("GET", "/api/public/health", scope="public")
def health(ctx: Ctx) -> Response:
    return Response(200, {"status": "OK", "version": ctx.server.version_string})


# --------------------------------------------------------------------- OTLP


@route("POST", "/api/public/otel/v1/traces", validate_body=False)
def otel_traces(ctx: Ctx) -> Response:
    """OTLP/HTTP export: protobuf (``application/x-protobuf``) or OTLP/JSON, optionally gzip'ed.

    Mirrors Langfuse's handler: the content type is matched by substring, and a v4
    server rejects an ``x-langfuse-ingestion-version`` above 4.
    """
    content_type = ctx.request.headers.get("content-type", "").lower()
    version = ingestion_version(ctx.request.headers)
    if ctx.server.version >= 4 and version is not None and (not version.isdigit() or int(version) > 4):
        raise ApiError(400, f'Unsupported x-langfuse-ingestion-version: "{version}". Maximum supported: "4".',
                       violation=True)
    if "application/x-protobuf" in content_type:
        spans = decode_protobuf(ctx.request.body)
    elif "application/json" in content_type:
        body = ctx.body if ctx.body is not None else _json_body(ctx.request.body)
        errors = ctx.spec.validate_body(ctx.op, body)
        if errors:
            raise ApiError(400, "; ".join(errors), violation=True)
        spans = decode_json(body)
    else:
        raise ApiError(400, f"Invalid content type {content_type!r}: use application/x-protobuf or "
                            "application/json", violation=True)
    ingest_spans(ctx.proj, spans, ctx.server.model_prices)
    return Response(200, {})


def ingestion_version(headers: dict[str, str]) -> str | None:
    """``x-langfuse-ingestion-version`` (Langfuse also accepts underscores in the name)."""
    return headers.get("x-langfuse-ingestion-version", headers.get("x_langfuse_ingestion_version"))


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, "Invalid JSON body", violation=True) from None


# ---------------------------------------------------------- batch ingestion

_OBSERVATION_EVENT_TYPES = {
    "span-create": "SPAN", "span-update": "SPAN", "generation-create": "GENERATION",
    "generation-update": "GENERATION", "event-create": "EVENT",
    "observation-create": None, "observation-update": None,
}


@route("POST", "/api/public/ingestion", validate_body=False)
def ingestion(ctx: Ctx) -> Response:
    """Batch ingestion: each event succeeds or fails on its own (HTTP 207).

    Only the envelope can fail the whole request; an event that violates
    ``IngestionEvent`` is reported in ``errors`` (and recorded as a violation).
    """
    body = ctx.body
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise ApiError(400, "Invalid request data: 'batch' must be an array of events", violation=True)
    successes: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, event in enumerate(body["batch"]):
        event_id = event.get("id") if isinstance(event, dict) and isinstance(event.get("id"), str) else str(index)
        problem = ctx.spec.validate_component("IngestionEvent", event)
        if problem:
            ctx.violation(f"batch[{index}]: {problem}")
            errors.append({"id": event_id, "status": 400, "message": "Invalid request data", "error": problem})
            continue
        try:
            _apply_event(ctx.proj, event, ctx.server.model_prices)
        except ApiError as exc:
            if exc.violation:
                ctx.violation(f"batch[{index}]: {exc.message}")
            errors.append({"id": event_id, "status": exc.status, "message": exc.message, "error": exc.error})
            continue
        successes.append({"id": event_id, "status": 201})
    return Response(207, {"successes": successes, "errors": errors})


def _apply_event(project: Project, event: dict[str, Any], prices: Any) -> None:
    kind, body = event["type"], event["body"]
    event_time = parse_time_or_none(event.get("timestamp")) or utcnow()
    if kind == "trace-create":
        trace_id = body.get("id") or new_id()
        upsert_trace(project, trace_id, {
            "name": body.get("name"), "user_id": body.get("userId"), "session_id": body.get("sessionId"),
            "release": body.get("release"), "version": body.get("version"), "input": body.get("input"),
            "output": body.get("output"), "metadata": body.get("metadata"), "tags": body.get("tags"),
            "environment": body.get("environment"), "public": body.get("public"),
        }, timestamp=parse_time_or_none(body.get("timestamp")) or event_time)
    elif kind == "score-create":
        create_score(project, body, event_time=event_time)
    elif kind in _OBSERVATION_EVENT_TYPES:
        _apply_observation_event(project, kind, body, event_time, prices)
    # sdk-log events are accepted and dropped, like Langfuse does


def _apply_observation_event(project: Project, kind: str, body: dict[str, Any], event_time: datetime,
                             prices: Any) -> None:
    obs_id = body.get("id") or new_id()
    existing = project.observations.get(obs_id)
    trace_id = body.get("traceId") or (existing.trace_id if existing else None) or new_id()
    creating = kind.endswith("-create")
    obs_type = _OBSERVATION_EVENT_TYPES[kind] or body.get("type")
    start = parse_time_or_none(body.get("startTime")) or (event_time if creating and existing is None else None)
    end = parse_time_or_none(body.get("endTime"))
    if kind == "event-create" and end is None:
        end = start
    environment = body.get("environment") or "default"
    if trace_id not in project.traces:
        upsert_trace(project, trace_id, {"environment": environment}, timestamp=start or event_time)
    upsert_observation(project, obs_id, trace_id, {
        "type": obs_type if (creating or kind == "observation-update") else None,
        "name": body.get("name"),
        "start_time": start,
        "end_time": end,
        "completion_start_time": parse_time_or_none(body.get("completionStartTime")),
        "model": body.get("model"),
        "model_parameters": body.get("modelParameters"),
        "input": body.get("input"),
        "output": body.get("output"),
        "metadata": body.get("metadata"),
        "level": body.get("level"),
        "status_message": body.get("statusMessage"),
        "parent_observation_id": body.get("parentObservationId"),
        "version": body.get("version"),
        "environment": body.get("environment"),
        "usage_details": finalize_usage(normalize_usage(body.get("usageDetails") or body.get("usage"))) or None,
        "cost_details": finalize_costs(_ingestion_costs(body)) or None,
        "prompt_name": body.get("promptName"),
        "prompt_version": body.get("promptVersion"),
    }, prices=prices)


def _ingestion_costs(body: dict[str, Any]) -> dict[str, float]:
    costs = {k: float(v) for k, v in (body.get("costDetails") or {}).items() if isinstance(v, int | float)}
    usage = body.get("usage") or {}
    for key, name in (("inputCost", "input"), ("outputCost", "output"), ("totalCost", "total")):
        if isinstance(usage.get(key), int | float) and name not in costs:
            costs[name] = float(usage[key])
    return costs


# ------------------------------------------------------------------- traces

_TRACE_ORDER_FIELDS = {
    "id": lambda t: t.id, "timestamp": lambda t: t.timestamp, "name": lambda t: t.name or "",
    "userId": lambda t: t.user_id or "", "release": lambda t: t.release or "", "version": lambda t: t.version or "",
    "public": lambda t: t.public, "bookmarked": lambda t: t.bookmarked, "sessionId": lambda t: t.session_id or "",
}


def field_groups(raw: str | None, allowed: frozenset[str], default: frozenset[str]) -> frozenset[str]:
    """Parse a ``fields`` parameter; unknown groups are a 400 like Langfuse's enum check."""
    if raw in (None, ""):
        return default
    groups = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = groups - allowed
    if unknown:
        raise ApiError(400, f"Unknown field group(s): {', '.join(sorted(unknown))}. "
                            f"Allowed: {', '.join(sorted(allowed))}", violation=True)
    return groups | {"core"}


def _order_by(raw: str | None) -> tuple[str, bool]:
    """``field.asc|desc`` → (field, descending); default newest first."""
    if not raw:
        return "timestamp", True
    field, _, direction = raw.partition(".")
    if field not in _TRACE_ORDER_FIELDS or direction not in ("asc", "desc"):
        raise ApiError(400, f"Invalid orderBy {raw!r}: use [field].[asc|desc] with field one of "
                            f"{', '.join(_TRACE_ORDER_FIELDS)}", violation=True)
    return field, direction == "desc"


def trace_column(project: Project) -> Callable[[Trace, str, str | None], Any]:
    """Column getter for structured trace filters."""

    def get(t: Trace, column: str, key: str | None) -> Any:
        simple = {"id": t.id, "name": t.name, "timestamp": t.timestamp, "userId": t.user_id,
                  "sessionId": t.session_id, "environment": t.environment, "version": t.version,
                  "release": t.release, "tags": t.tags, "bookmarked": t.bookmarked, "public": t.public}
        if column in simple:
            return simple[column]
        if column == "metadata":
            return metadata_value(t.metadata, key)
        if column == "latency":
            return project.trace_latency(t.id)
        if column == "totalCost":
            return project.trace_cost(t.id)
        observations = project.trace_observations(t.id)
        if column in ("inputTokens", "outputTokens", "totalTokens", "tokens"):
            attr = {"inputTokens": "input_tokens", "outputTokens": "output_tokens"}.get(column, "total_tokens")
            return sum(getattr(o, attr) for o in observations)
        if column in ("inputCost", "outputCost"):
            return sum(o.cost(column[:-4]) or 0.0 for o in observations)
        if column == "level":
            order = ["DEBUG", "DEFAULT", "WARNING", "ERROR"]
            return max((o.level for o in observations), key=order.index, default=None)
        if column.endswith("Count") and column[:-5].upper() in ("WARNING", "ERROR", "DEFAULT", "DEBUG"):
            return sum(1 for o in observations if o.level == column[:-5].upper())
        if column in ("scores_avg", "scores"):
            values = [s.value for s in project.trace_scores(t.id) if s.name == key and s.value is not None]
            return sum(values) / len(values) if values else None
        raise ApiError(400, f"Invalid filter column {column!r} for traces", violation=True)

    return get


def _trace_predicate(ctx: Ctx) -> tuple[Callable[[Trace], bool] | None, datetime | None, datetime | None]:
    """Predicate and time bounds from the query (the JSON ``filter`` wins if given)."""
    conditions = parse_filter_param(ctx.query.get("filter"))
    if conditions is not None:
        getter = trace_column(ctx.proj)
        return (lambda t: matches_all(t, conditions, getter)), None, None
    q = ctx.query
    checks: list[Callable[[Trace], bool]] = []
    for param, attr in (("userId", "user_id"), ("name", "name"), ("sessionId", "session_id"),
                        ("version", "version"), ("release", "release")):
        if q.get(param) is not None:
            checks.append(attr_equals(attr, q[param]))
    if q.get("tags"):
        wanted = set(q["tags"])
        checks.append(lambda t: wanted <= set(t.tags))
    if q.get("environment"):
        environments = set(q["environment"])
        checks.append(lambda t: t.environment in environments)
    predicate = (lambda t: all(check(t) for check in checks)) if checks else None
    return predicate, ctx.time_param("fromTimestamp"), ctx.time_param("toTimestamp")


@route("GET", "/api/public/traces")
def list_traces(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    groups = field_groups(ctx.query.get("fields"), render.TRACE_FIELD_GROUPS, render.TRACE_FIELD_GROUPS)
    order_field, descending = _order_by(ctx.query.get("orderBy"))
    predicate, start, end = _trace_predicate(ctx)
    project = ctx.proj
    keys = project.trace_index.keys
    lo, hi = project.trace_index.bounds(start, end)
    offset = (page - 1) * limit
    if predicate is None and order_field == "timestamp":
        # The fast path for paging through large seeded data: a slice of the index.
        total = hi - lo
        if descending:
            top = hi - offset
            ids = [keys[i][1] for i in range(top - 1, max(lo, top - limit) - 1, -1)]
        else:
            ids = [k[1] for k in keys[lo + offset: min(hi, lo + offset + limit)]]
        selected = [project.traces[i] for i in ids]
    else:
        candidates = (project.traces[k[1]] for k in keys[lo:hi])
        matching = [t for t in candidates if predicate is None or predicate(t)]
        if order_field == "timestamp":
            if descending:
                matching.reverse()
        else:
            matching.sort(key=lambda t: (_TRACE_ORDER_FIELDS[order_field](t), t.id), reverse=descending)
        total = len(matching)
        selected = matching[offset: offset + limit]
    data = [render.trace_with_details(project, t, groups) for t in selected]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, total)})


@route("GET", "/api/public/traces/{traceId}")
def get_trace(ctx: Ctx) -> Response:
    groups = field_groups(ctx.query.get("fields"), render.TRACE_FIELD_GROUPS, render.TRACE_FIELD_GROUPS)
    trace = ctx.proj.traces.get(ctx.path["traceId"])
    if trace is None:
        raise ApiError(404, "Trace not found within authorized project")
    return Response(200, render.trace_with_full_details(ctx.proj, trace, groups))


@route("DELETE", "/api/public/traces/{traceId}")
def delete_trace(ctx: Ctx) -> Response:
    if not ctx.proj.delete_trace(ctx.path["traceId"]):
        raise ApiError(404, "Trace not found within authorized project")
    return Response(200, {"message": "Trace deleted successfully"})


@route("DELETE", "/api/public/traces")
def delete_traces(ctx: Ctx) -> Response:
    for trace_id in ctx.body["traceIds"]:
        ctx.proj.delete_trace(trace_id)
    return Response(200, {"message": "Traces deleted successfully"})


# ------------------------------------------------------------- observations


def observation_column(project: Project) -> Callable[[Observation, str, str | None], Any]:
    """Column getter for structured observation filters."""

    def get(o: Observation, column: str, key: str | None) -> Any:
        trace = project.traces.get(o.trace_id)
        simple = {
            "id": o.id, "type": o.type, "name": o.name, "traceId": o.trace_id, "startTime": o.start_time,
            "endTime": o.end_time, "environment": o.environment, "level": o.level,
            "statusMessage": o.status_message, "version": o.version, "parentObservationId": o.parent_observation_id,
            "userId": trace.user_id if trace else None, "sessionId": trace.session_id if trace else None,
            "isRootObservation": render.is_root(o), "traceName": trace.name if trace else None,
            "traceTags": trace.tags if trace else [], "tags": trace.tags if trace else [],
            "latency": o.latency_seconds, "timeToFirstToken": o.time_to_first_token_seconds,
            "inputTokens": o.input_tokens, "outputTokens": o.output_tokens, "totalTokens": o.total_tokens,
            "tokens": o.total_tokens, "inputCost": o.cost("input"), "outputCost": o.cost("output"),
            "totalCost": o.cost("total"), "model": o.model, "providedModelName": o.model,
            "promptName": o.prompt_name, "promptVersion": o.prompt_version,
            "input": render.raw_string(o.input), "output": render.raw_string(o.output),
        }
        if column in simple:
            return simple[column]
        if column == "metadata":
            return metadata_value(o.metadata, key)
        if column == "tokensPerSecond":
            latency = o.latency_seconds
            return o.output_tokens / latency if latency else None
        raise ApiError(400, f"Invalid filter column {column!r} for observations", violation=True)

    return get


def _observation_predicate(ctx: Ctx, *, v2: bool) -> tuple[Callable[[Observation], bool] | None,
                                                            datetime | None, datetime | None]:
    conditions = parse_filter_param(ctx.query.get("filter"))
    project = ctx.proj
    if conditions is not None:
        getter = observation_column(project)
        return (lambda o: matches_all(o, conditions, getter)), None, None
    q = ctx.query
    checks: list[Callable[[Observation], bool]] = []
    for param, attr in (("name", "name"), ("type", "type"), ("level", "level"), ("version", "version"),
                        ("traceId", "trace_id")):
        if q.get(param) is not None:
            checks.append(attr_equals(attr, q[param]))
    if "parentObservationId" in q:
        parent = q["parentObservationId"] or None  # "" matches observations without a parent
        checks.append(lambda o: o.parent_observation_id == parent)
    if v2 and q.get("isRootObservation") is not None:
        wanted = q["isRootObservation"]
        checks.append(lambda o: render.is_root(o) == wanted)
    if q.get("environment"):
        environments = set(q["environment"])
        checks.append(lambda o: o.environment in environments)
    for param, attr in (("userId", "user_id"), ("sessionId", "session_id")):
        if q.get(param) is not None:
            checks.append(_trace_attr_equals(project, attr, q[param]))
    predicate = (lambda o: all(check(o) for check in checks)) if checks else None
    return predicate, ctx.time_param("fromStartTime"), ctx.time_param("toStartTime")


def _trace_attr_equals(project: Project, attr: str, value: Any) -> Callable[[Observation], bool]:
    """Observation filter on an attribute of its trace (userId, sessionId)."""
    return lambda o: getattr(project.traces.get(o.trace_id), attr, None) == value


def _observations_newest_first(project: Project, start: datetime | None, end: datetime | None,
                               before: tuple[datetime, str] | None = None,
                               trace_id: str | None = None) -> Iterator[Observation]:
    """Observations in ``[start, end)`` ordered by (startTime, id) descending, after a cursor."""
    if trace_id is not None:  # small per-trace list, no need for the global index
        items = sorted(((o.start_time, o.id) for o in project.trace_observations(trace_id)), reverse=True)
        for when, obs_id in items:
            if (start is None or when >= start) and (end is None or when < end) and (
                    before is None or (when, obs_id) < before):
                yield project.observations[obs_id]
        return
    keys = project.observation_index.keys
    lo, hi = project.observation_index.bounds(start, end)
    if before is not None:
        hi = min(hi, bisect.bisect_left(keys, before))
    for index in range(hi - 1, lo - 1, -1):
        yield project.observations[keys[index][1]]


@route("GET", "/api/public/observations")
def list_observations_v1(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    predicate, start, end = _observation_predicate(ctx, v2=False)
    matching = [o for o in _observations_newest_first(ctx.proj, start, end, trace_id=ctx.query.get("traceId"))
                if predicate is None or predicate(o)]
    offset = (page - 1) * limit
    data = [render.observation_view(o) for o in matching[offset: offset + limit]]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, len(matching))})


@route("GET", "/api/public/observations/{observationId}")
def get_observation_v1(ctx: Ctx) -> Response:
    obs = ctx.proj.observations.get(ctx.path["observationId"])
    if obs is None:
        raise ApiError(404, "Observation not found within authorized project")
    return Response(200, render.observation_view(obs))


def encode_cursor(when: datetime, record_id: str) -> str:
    payload = json.dumps({"t": when.isoformat(), "id": record_id}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return parse_time(payload["t"]), str(payload["id"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "Invalid cursor", violation=True) from None


@route("GET", "/api/public/v2/observations")
def list_observations_v2(ctx: Ctx) -> Response:
    """Cursor-paginated observations, newest first, with field groups."""
    if ctx.query.get("parseIoAsJson"):
        raise ApiError(400, "parseIoAsJson is deprecated; input/output are always returned as raw strings",
                       violation=True)
    limit = ctx.int_param("limit", 50)
    if not 1 <= limit <= 1000:
        raise ApiError(400, "limit must be between 1 and 1000", violation=True)
    groups = field_groups(ctx.query.get("fields"), render.OBSERVATION_V2_FIELD_GROUPS,
                          frozenset({"core", "basic"}))
    expand = frozenset(ctx.csv_param("expandMetadata") or ())
    before = decode_cursor(ctx.query["cursor"]) if ctx.query.get("cursor") else None
    predicate, start, end = _observation_predicate(ctx, v2=True)
    page: list[Observation] = []
    has_more = False
    for obs in _observations_newest_first(ctx.proj, start, end, before, trace_id=ctx.query.get("traceId")):
        if predicate is not None and not predicate(obs):
            continue
        if len(page) == limit:
            has_more = True
            break
        page.append(obs)
    meta: dict[str, Any] = {}
    if has_more:
        meta["cursor"] = encode_cursor(page[-1].start_time, page[-1].id)
    data = [render.observation_v2(ctx.proj, o, groups, expand) for o in page]
    return Response(200, {"data": data, "meta": meta})


# ----------------------------------------------------------------- sessions


def _sessions(project: Project) -> dict[str, list[Trace]]:
    sessions: dict[str, list[Trace]] = {}
    for _, trace_id in project.trace_index.keys:
        trace = project.traces[trace_id]
        if trace.session_id:
            sessions.setdefault(trace.session_id, []).append(trace)
    return sessions


def _session(project: Project, session_id: str, traces: list[Trace]) -> dict[str, Any]:
    first = traces[0]
    return {"id": session_id, "createdAt": iso(first.timestamp), "projectId": project.id,
            "environment": first.environment}


@route("GET", "/api/public/sessions")
def list_sessions(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    start, end = ctx.time_param("fromTimestamp"), ctx.time_param("toTimestamp")
    environments = set(ctx.query.get("environment") or [])
    rows = []
    for session_id, traces in _sessions(ctx.proj).items():
        created = traces[0].timestamp
        if (start and created < start) or (end and created >= end):
            continue
        if environments and traces[0].environment not in environments:
            continue
        rows.append(_session(ctx.proj, session_id, traces))
    rows.sort(key=lambda r: r["createdAt"], reverse=True)
    offset = (page - 1) * limit
    return Response(200, {"data": rows[offset: offset + limit], "meta": render.page_meta(page, limit, len(rows))})


@route("GET", "/api/public/sessions/{sessionId}")
def get_session(ctx: Ctx) -> Response:
    traces = _sessions(ctx.proj).get(ctx.path["sessionId"])
    if not traces:
        raise ApiError(404, "Session not found")
    body = _session(ctx.proj, ctx.path["sessionId"], traces)
    body["traces"] = [render.trace(t) for t in traces]
    return Response(200, body)
