"""The metrics query engine behind ``GET /api/public/metrics`` (v1) and
``GET /api/public/v2/metrics`` (v2).

A query (``view``, ``metrics``, ``dimensions``, ``filters``, ``timeDimension``,
``fromTimestamp``/``toTimestamp``, ``orderBy``, ``config``) is evaluated over the
project's stored records, so aggregates are real: counts, token and cost sums,
latency percentiles, histograms. Result rows use Langfuse's column names: the
dimension fields, ``time_dimension`` and ``<aggregation>_<measure>``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import ApiError
from .filters import check_conditions, matches_all, metadata_value
from .models import Observation, Project, Score, Trace, iso, parse_time
from .routing import Ctx, Response, route

Getter = Callable[[Any], Any]
AGGREGATIONS = frozenset({"sum", "avg", "count", "max", "min", "p50", "p75", "p90", "p95", "p99", "histogram", "uniq"})
GRANULARITY_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 31 * 86400}
AUTO_BUCKETS = 50
DEFAULT_ROW_LIMIT = 100


@dataclass
class View:
    """What one metrics view can group by and measure, and where its rows come from."""

    rows: Callable[[Project, datetime, datetime], list[Any]]
    time: Getter
    dimensions: dict[str, Getter]
    measures: dict[str, Getter]
    high_cardinality: frozenset[str]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _month(t: datetime) -> str:
    return f"{t:%Y-%m}"


def _observation_view(project: Project) -> View:
    def trace_of(o: Observation) -> Trace | None:
        return project.traces.get(o.trace_id)

    def rows(p: Project, start: datetime, end: datetime) -> list[Observation]:
        lo, hi = p.observation_index.bounds(start, end)
        return [p.observations[k[1]] for k in p.observation_index.keys[lo:hi]]

    def per_second(tokens: int, o: Observation) -> float | None:
        latency = o.latency_seconds
        return tokens / latency if latency else None

    scores_per_observation: dict[str, int] = {}
    for score in project.scores.values():
        if score.observation_id:
            scores_per_observation[score.observation_id] = scores_per_observation.get(score.observation_id, 0) + 1

    dimensions: dict[str, Getter] = {
        "environment": lambda o: o.environment,
        "type": lambda o: o.type,
        "name": lambda o: o.name,
        "level": lambda o: o.level,
        "version": lambda o: o.version,
        "tags": lambda o: list(t.tags) if (t := trace_of(o)) else [],
        "release": lambda o: t.release if (t := trace_of(o)) else None,
        "traceName": lambda o: t.name if (t := trace_of(o)) else None,
        "traceRelease": lambda o: t.release if (t := trace_of(o)) else None,
        "traceVersion": lambda o: t.version if (t := trace_of(o)) else None,
        "providedModelName": lambda o: o.model,
        "promptName": lambda o: o.prompt_name,
        "promptVersion": lambda o: o.prompt_version,
        "isRootObservation": lambda o: o.parent_observation_id is None or o.is_app_root,
        "startTimeMonth": lambda o: _month(o.start_time),
        "id": lambda o: o.id,
        "traceId": lambda o: o.trace_id,
        "userId": lambda o: t.user_id if (t := trace_of(o)) else None,
        "sessionId": lambda o: t.session_id if (t := trace_of(o)) else None,
        "parentObservationId": lambda o: o.parent_observation_id,
    }
    measures: dict[str, Getter] = {
        "count": lambda o: 1,
        "latency": lambda o: _ms(o.latency_seconds),
        "streamingLatency": lambda o: _ms((o.end_time - o.completion_start_time).total_seconds())
        if o.end_time and o.completion_start_time else None,
        "inputTokens": lambda o: o.input_tokens,
        "outputTokens": lambda o: o.output_tokens,
        "totalTokens": lambda o: o.total_tokens,
        "outputTokensPerSecond": lambda o: per_second(o.output_tokens, o),
        "tokensPerSecond": lambda o: per_second(o.total_tokens, o),
        "inputCost": lambda o: o.cost("input"),
        "outputCost": lambda o: o.cost("output"),
        "totalCost": lambda o: o.cost("total"),
        "timeToFirstToken": lambda o: _ms(o.time_to_first_token_seconds),
        "countScores": lambda o: scores_per_observation.get(o.id, 0),
    }
    return View(rows, lambda o: o.start_time, dimensions, measures,
                frozenset({"id", "traceId", "userId", "sessionId", "parentObservationId"}))


def _trace_view(project: Project) -> View:
    def rows(p: Project, start: datetime, end: datetime) -> list[Trace]:
        lo, hi = p.trace_index.bounds(start, end)
        return [p.traces[k[1]] for k in p.trace_index.keys[lo:hi]]

    def observations(t: Trace) -> list[Observation]:
        return [project.observations[i] for i in project.observations_by_trace.get(t.id, ())
                if i in project.observations]

    dimensions: dict[str, Getter] = {
        "id": lambda t: t.id, "name": lambda t: t.name, "tags": lambda t: list(t.tags),
        "userId": lambda t: t.user_id, "sessionId": lambda t: t.session_id, "release": lambda t: t.release,
        "version": lambda t: t.version, "environment": lambda t: t.environment,
        "timestampMonth": lambda t: _month(t.timestamp),
    }
    measures: dict[str, Getter] = {
        "count": lambda t: 1,
        "observationsCount": lambda t: len(project.observations_by_trace.get(t.id, ())),
        "scoresCount": lambda t: len(project.scores_by_trace.get(t.id, ())),
        "uniqueUserIds": lambda t: t.user_id,
        "latency": lambda t: project.trace_latency(t.id) * 1000.0,
        "totalTokens": lambda t: sum(o.total_tokens for o in observations(t)),
        "totalCost": lambda t: project.trace_cost(t.id),
    }
    return View(rows, lambda t: t.timestamp, dimensions, measures, frozenset())


def _score_view(project: Project, data_types: frozenset[str], kind: str) -> View:
    def rows(p: Project, start: datetime, end: datetime) -> list[Score]:
        return [s for s in p.scores.values() if s.data_type in data_types and start <= s.timestamp < end]

    def trace_of(s: Score) -> Trace | None:
        return project.traces.get(s.trace_id) if s.trace_id else None

    def observation_of(s: Score) -> Observation | None:
        return project.observations.get(s.observation_id) if s.observation_id else None

    dimensions: dict[str, Getter] = {
        "environment": lambda s: s.environment, "name": lambda s: s.name, "source": lambda s: s.source,
        "dataType": lambda s: s.data_type, "configId": lambda s: s.config_id,
        "timestampMonth": lambda s: _month(s.timestamp), "timestampDay": lambda s: f"{s.timestamp:%Y-%m-%d}",
        "traceName": lambda s: t.name if (t := trace_of(s)) else None,
        "tags": lambda s: list(t.tags) if (t := trace_of(s)) else [],
        "traceRelease": lambda s: t.release if (t := trace_of(s)) else None,
        "traceVersion": lambda s: t.version if (t := trace_of(s)) else None,
        "observationName": lambda s: o.name if (o := observation_of(s)) else None,
        "observationModelName": lambda s: o.model if (o := observation_of(s)) else None,
        "observationPromptName": lambda s: o.prompt_name if (o := observation_of(s)) else None,
        "observationPromptVersion": lambda s: o.prompt_version if (o := observation_of(s)) else None,
        "id": lambda s: s.id, "traceId": lambda s: s.trace_id, "observationId": lambda s: s.observation_id,
        "sessionId": lambda s: s.session_id, "userId": lambda s: t.user_id if (t := trace_of(s)) else None,
    }
    if kind == "categorical":
        dimensions["stringValue"] = lambda s: s.string_value
    else:
        dimensions["value"] = lambda s: s.value
    if kind == "boolean":
        dimensions["booleanValue"] = lambda s: bool(s.value)
    measures: dict[str, Getter] = {"count": lambda s: 1}
    if kind != "categorical":
        measures["value"] = lambda s: s.value
    return View(rows, lambda s: s.timestamp, dimensions, measures,
                frozenset({"id", "traceId", "userId", "sessionId", "observationId"}))


def _view(project: Project, name: str, *, v2: bool) -> View:
    builders: dict[str, Callable[[], View]] = {
        "observations": lambda: _observation_view(project),
        "scores-numeric": lambda: _score_view(project, frozenset({"NUMERIC", "BOOLEAN"}), "numeric"),
        "scores-boolean": lambda: _score_view(project, frozenset({"BOOLEAN"}), "boolean"),
        "scores-categorical": lambda: _score_view(project, frozenset({"CATEGORICAL"}), "categorical"),
    }
    if not v2:
        builders["traces"] = lambda: _trace_view(project)
    if name not in builders:
        raise ApiError(400, f"Invalid view {name!r}; supported: {', '.join(builders)}", violation=True)
    return builders[name]()


# ------------------------------------------------------------------- query


@dataclass
class Query:
    view: str
    metrics: list[tuple[str, str]]  # (measure, aggregation)
    dimensions: list[str]
    filters: list[dict[str, Any]]
    granularity: str | None
    start: datetime
    end: datetime
    order_by: list[tuple[str, bool]]  # (field, descending)
    bins: int
    row_limit: int


def parse_query(raw: str) -> Query:
    """Parse and check the ``query`` JSON parameter (400 with a message otherwise)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Invalid query: not valid JSON", violation=True) from None
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid query: expected a JSON object", violation=True)

    def fail(message: str) -> ApiError:
        return ApiError(400, f"Invalid query: {message}", violation=True)

    if not isinstance(data.get("view"), str):
        raise fail("'view' is required")
    metrics = data.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise fail("at least one metric is required")
    parsed_metrics = []
    for metric in metrics:
        if not isinstance(metric, dict) or not isinstance(metric.get("measure"), str):
            raise fail(f"metric {metric!r} needs a 'measure'")
        aggregation = metric.get("aggregation", "count")
        if aggregation not in AGGREGATIONS:
            raise fail(f"unknown aggregation {aggregation!r}")
        parsed_metrics.append((metric["measure"], aggregation))
    dimensions = data.get("dimensions") or []
    if not isinstance(dimensions, list) or any(not isinstance(d, dict) or "field" not in d for d in dimensions):
        raise fail("'dimensions' must be a list of {\"field\": ...}")
    try:
        start, end = parse_time(data.get("fromTimestamp")), parse_time(data.get("toTimestamp"))
    except (TypeError, ValueError):
        raise fail("'fromTimestamp' and 'toTimestamp' are required ISO 8601 datetimes") from None
    if end <= start:
        raise fail("'toTimestamp' must be after 'fromTimestamp'")
    granularity = None
    if data.get("timeDimension"):
        granularity = (data["timeDimension"] or {}).get("granularity", "auto")
        if granularity not in {*GRANULARITY_SECONDS, "auto"}:
            raise fail(f"unknown granularity {granularity!r}")
    order_by = []
    for entry in data.get("orderBy") or []:
        if not isinstance(entry, dict) or entry.get("direction") not in ("asc", "desc") or "field" not in entry:
            raise fail(f"invalid orderBy entry {entry!r}")
        order_by.append((entry["field"], entry["direction"] == "desc"))
    config = data.get("config") or {}
    bins, row_limit = config.get("bins", 10), config.get("row_limit", DEFAULT_ROW_LIMIT)
    if not (isinstance(bins, int) and 1 <= bins <= 100):
        raise fail("config.bins must be between 1 and 100")
    if not (isinstance(row_limit, int) and 1 <= row_limit <= 1000):
        raise fail("config.row_limit must be between 1 and 1000")
    return Query(view=data["view"], metrics=parsed_metrics, dimensions=[d["field"] for d in dimensions],
                 filters=check_conditions(data.get("filters") or []), granularity=granularity, start=start,
                 end=end, order_by=order_by, bins=bins, row_limit=row_limit)


def run_query(project: Project, query: Query, *, v2: bool) -> list[dict[str, Any]]:
    view = _view(project, query.view, v2=v2)
    _check_fields(view, query, v2=v2)
    getter = _filter_getter(view)
    rows = [r for r in view.rows(project, query.start, query.end) if matches_all(r, query.filters, getter)]
    granularity = _granularity(query) if query.granularity else None
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        bucket = _bucket(view.time(row), granularity) if granularity else None
        key = (bucket, *(_hashable(view.dimensions[d](row)) for d in query.dimensions))
        groups.setdefault(key, []).append(row)
    if granularity:
        _fill_buckets(groups, query, granularity)
    result = []
    for key, members in groups.items():
        out: dict[str, Any] = {}
        for name, value in zip(query.dimensions, key[1:], strict=True):
            out[name] = list(value) if isinstance(value, tuple) else value
        if granularity:
            out["time_dimension"] = iso(key[0])
        for measure, aggregation in query.metrics:
            values = [view.measures[measure](m) for m in members]
            out[f"{aggregation}_{measure}"] = aggregate(aggregation, values, query.bins)
        result.append(out)
    _sort(result, query)
    return result[: query.row_limit]


def _check_fields(view: View, query: Query, *, v2: bool) -> None:
    for measure, _ in query.metrics:
        if measure not in view.measures:
            raise ApiError(400, f"Invalid measure {measure!r} for view {query.view}; supported: "
                                f"{', '.join(view.measures)}", violation=True)
    for dimension in query.dimensions:
        if dimension not in view.dimensions:
            raise ApiError(400, f"Invalid dimension {dimension!r} for view {query.view}", violation=True)
        if v2 and dimension in view.high_cardinality:
            raise ApiError(400, f"Dimension {dimension!r} has high cardinality and cannot be used for grouping "
                                f"in the v2 metrics API; use it as a filter instead", violation=True)


def _filter_getter(view: View) -> Callable[[Any, str, str | None], Any]:
    def get(row: Any, column: str, key: str | None) -> Any:
        if column in view.dimensions:
            return view.dimensions[column](row)
        if column in view.measures:
            return view.measures[column](row)
        if column == "metadata":
            return metadata_value(getattr(row, "metadata", None), key)
        if column in ("startTime", "timestamp"):
            return view.time(row)
        raise ApiError(400, f"Invalid filter column {column!r}", violation=True)

    return get


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def aggregate(aggregation: str, values: list[Any], bins: int = 10) -> Any:
    """One aggregate over measure values (None values are ignored, as SQL does)."""
    if aggregation == "count":
        return len(values)
    if aggregation == "uniq":
        return len({v for v in values if v is not None})
    numbers = sorted(float(v) for v in values if v is not None and not isinstance(v, bool | str))
    if aggregation == "sum":
        return sum(numbers)
    if not numbers:
        return [] if aggregation == "histogram" else None
    if aggregation == "avg":
        return sum(numbers) / len(numbers)
    if aggregation == "min":
        return numbers[0]
    if aggregation == "max":
        return numbers[-1]
    if aggregation == "histogram":
        return histogram(numbers, bins)
    return percentile(numbers, int(aggregation[1:]) / 100.0)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks."""
    position = (len(sorted_values) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def histogram(sorted_values: list[float], bins: int) -> list[list[float]]:
    """``[lower, upper, count]`` per bin, as the Langfuse metrics API returns histograms."""
    low, high = sorted_values[0], sorted_values[-1]
    if high == low:
        return [[low, high, float(len(sorted_values))]]
    width = (high - low) / bins
    edges = [low + i * width for i in range(bins)] + [high]
    counts = [0] * bins
    for value in sorted_values:
        counts[min(bins - 1, bisect.bisect_right(edges, value) - 1)] += 1
    return [[edges[i], edges[i + 1], float(counts[i])] for i in range(bins)]


def _granularity(query: Query) -> str:
    if query.granularity != "auto":
        assert query.granularity is not None
        return query.granularity
    span = (query.end - query.start).total_seconds()
    for name, seconds in GRANULARITY_SECONDS.items():
        if span / seconds <= AUTO_BUCKETS:
            return name
    return "month"


def _bucket(when: datetime, granularity: str) -> datetime:
    if granularity == "minute":
        return when.replace(second=0, microsecond=0)
    if granularity == "hour":
        return when.replace(minute=0, second=0, microsecond=0)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_bucket(bucket: datetime, granularity: str) -> datetime:
    if granularity == "month":
        return bucket.replace(year=bucket.year + bucket.month // 12, month=bucket.month % 12 + 1)
    return bucket + timedelta(seconds=GRANULARITY_SECONDS[granularity])


def _fill_buckets(groups: dict[tuple[Any, ...], list[Any]], query: Query, granularity: str) -> None:
    """Every dimension group gets a row for every time bucket of the range (zero counts)."""
    dimension_keys = {key[1:] for key in groups} or {tuple(None for _ in query.dimensions)}
    if not groups and query.dimensions:
        return
    bucket = _bucket(query.start, granularity)
    while bucket < query.end:
        for dims in dimension_keys:
            groups.setdefault((bucket, *dims), [])
        bucket = _next_bucket(bucket, granularity)


def _sort(rows: list[dict[str, Any]], query: Query) -> None:
    def natural(row: dict[str, Any]) -> tuple[str, ...]:
        return (str(row.get("time_dimension", "")), *(json.dumps(row.get(d), default=str) for d in query.dimensions))

    rows.sort(key=natural)
    for field, descending in reversed(query.order_by):
        aliases = {f"{a}_{m}": f"{a}_{m}" for m, a in query.metrics}
        # "count" may name a measure: map it to its alias when unambiguous (as Langfuse does).
        matching = [f"{a}_{m}" for m, a in query.metrics if m == field]
        key = aliases.get(field) or (matching[0] if len(matching) == 1 else field)
        rows.sort(key=_row_sort_key(key), reverse=descending)


def _row_sort_key(column: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return lambda row: _sort_value(row.get(column))


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, json.dumps(value, default=str))


@route("GET", "/api/public/metrics")
def metrics_v1(ctx: Ctx) -> Response:
    return Response(200, {"data": run_query(ctx.proj, parse_query(ctx.query["query"]), v2=False)})


@route("GET", "/api/public/v2/metrics")
def metrics_v2(ctx: Ctx) -> Response:
    return Response(200, {"data": run_query(ctx.proj, parse_query(ctx.query["query"]), v2=True)})
