"""Scores (create, v2 and v3 reads, delete) and score configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import render
from .api_tracing import decode_cursor, encode_cursor, field_groups
from .errors import ApiError
from .filters import attr_equals, attr_in, matches_all, metadata_value, parse_filter_param
from .ingest import create_score
from .models import Project, Score, ScoreConfig, new_id, utcnow
from .routing import Ctx, Response, route


@route("POST", "/api/public/scores")
def post_score(ctx: Ctx) -> Response:
    score = create_score(ctx.proj, ctx.body)
    return Response(200, {"id": score.id})


@route("DELETE", "/api/public/scores/{scoreId}")
def delete_score(ctx: Ctx) -> Response:
    if not ctx.proj.delete_score(ctx.path["scoreId"]):
        raise ApiError(404, "Score not found")
    return Response(204)


@route("GET", "/api/public/v2/scores/{scoreId}")
def get_score_v2(ctx: Ctx) -> Response:
    score = ctx.proj.scores.get(ctx.path["scoreId"])
    if score is None:
        raise ApiError(404, "Score not found")
    return Response(200, render.score_v2(ctx.proj, score, with_trace=False))


def _newest_first(scores: list[Score]) -> list[Score]:
    return sorted(scores, key=lambda s: (s.timestamp, s.id), reverse=True)


# ---------------------------------------------------------------- v2 scores


def _score_column(project: Project) -> Callable[[Score, str, str | None], Any]:
    def get(s: Score, column: str, key: str | None) -> Any:
        if column == "metadata":
            return metadata_value(s.metadata, key)
        trace = project.traces.get(s.trace_id) if s.trace_id else None
        values = {
            "id": s.id, "name": s.name, "source": s.source, "dataType": s.data_type, "value": s.value,
            "stringValue": s.string_value, "timestamp": s.timestamp, "environment": s.environment,
            "traceId": s.trace_id, "observationId": s.observation_id, "sessionId": s.session_id,
            "configId": s.config_id, "queueId": s.queue_id, "comment": s.comment,
            "userId": trace.user_id if trace else None, "tags": trace.tags if trace else [],
            "traceTags": trace.tags if trace else [],
        }
        if column not in values:
            raise ApiError(400, f"Invalid filter column {column!r} for scores", violation=True)
        return values[column]

    return get


_NUMERIC_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b,
}


def _v2_checks(ctx: Ctx, with_trace: bool) -> list[Callable[[Score], bool]]:
    q, project = ctx.query, ctx.proj
    if not with_trace and (q.get("userId") or q.get("traceTags")):
        raise ApiError(400, "Filtering by userId or traceTags requires the 'trace' field group", violation=True)
    checks: list[Callable[[Score], bool]] = []
    for param, attr in (("name", "name"), ("source", "source"), ("configId", "config_id"),
                        ("sessionId", "session_id"), ("datasetRunId", "dataset_run_id"), ("traceId", "trace_id"),
                        ("queueId", "queue_id"), ("dataType", "data_type")):
        if q.get(param) is not None:
            checks.append(attr_equals(attr, q[param]))
    for param, attr in (("scoreIds", "id"), ("observationId", "observation_id")):
        wanted = ctx.csv_param(param)
        if wanted:
            checks.append(attr_in(attr, wanted))
    if q.get("environment"):
        checks.append(attr_in("environment", q["environment"]))
    start, end = ctx.time_param("fromTimestamp"), ctx.time_param("toTimestamp")
    if start:
        checks.append(lambda s: s.timestamp >= start)
    if end:
        checks.append(lambda s: s.timestamp < end)
    if q.get("value") is not None:
        operator = q.get("operator") or "="
        if operator not in _NUMERIC_OPERATORS:
            raise ApiError(400, f"Invalid operator {operator!r}", violation=True)
        compare, target = _NUMERIC_OPERATORS[operator], q["value"]
        checks.append(lambda s: s.value is not None and compare(s.value, target))
    if q.get("userId") is not None:
        checks.append(lambda s: s.trace_id in project.traces and project.traces[s.trace_id].user_id == q["userId"])
    if q.get("traceTags"):
        tags = set(q["traceTags"])
        checks.append(lambda s: s.trace_id in project.traces and tags <= set(project.traces[s.trace_id].tags))
    conditions = parse_filter_param(q.get("filter"))
    if conditions is not None:
        getter = _score_column(project)
        checks.append(lambda s: matches_all(s, conditions, getter))
    return checks


@route("GET", "/api/public/v2/scores")
def list_scores_v2(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit(max_limit=100)
    groups = field_groups(ctx.query.get("fields"), frozenset({"score", "trace"}), frozenset({"score", "trace"}))
    with_trace = "trace" in groups
    checks = _v2_checks(ctx, with_trace)
    matching = _newest_first([s for s in ctx.proj.scores.values() if all(check(s) for check in checks)])
    offset = (page - 1) * limit
    data = [render.score_v2(ctx.proj, s, with_trace=with_trace) for s in matching[offset: offset + limit]]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, len(matching))})


# ---------------------------------------------------------------- v3 scores


def _upper_csv(ctx: Ctx, name: str) -> list[str] | None:
    values = ctx.csv_param(name)
    return [v.upper() for v in values] if values else None


def _v3_checks(ctx: Ctx) -> list[Callable[[Score], bool]]:
    """The v3 filters with the combination rules the spec documents (400 otherwise)."""
    q = ctx.query
    subjects = [p for p in ("traceId", "sessionId", "experimentId") if q.get(p)]
    if len(subjects) > 1:
        raise ApiError(400, f"{' and '.join(subjects)} are mutually exclusive", violation=True)
    if q.get("observationId") and not q.get("traceId"):
        raise ApiError(400, "observationId requires traceId", violation=True)
    data_types = _upper_csv(ctx, "dataType")
    has_value = q.get("value") not in (None, "")
    has_range = q.get("valueMin") is not None or q.get("valueMax") is not None
    if has_value and (not data_types or len(data_types) != 1 or data_types[0] not in
                      ("NUMERIC", "BOOLEAN", "CATEGORICAL")):
        raise ApiError(400, "value requires exactly one dataType of NUMERIC, BOOLEAN or CATEGORICAL", violation=True)
    if has_range and data_types != ["NUMERIC"]:
        raise ApiError(400, "valueMin/valueMax require dataType=NUMERIC", violation=True)

    checks: list[Callable[[Score], bool]] = []
    for param, attr, upper in (("id", "id", False), ("name", "name", False), ("source", "source", True),
                               ("dataType", "data_type", True), ("environment", "environment", False),
                               ("configId", "config_id", False), ("queueId", "queue_id", False),
                               ("authorUserId", "author_user_id", False), ("traceId", "trace_id", False),
                               ("sessionId", "session_id", False), ("observationId", "observation_id", False),
                               ("experimentId", "dataset_run_id", False)):
        wanted = _upper_csv(ctx, param) if upper else ctx.csv_param(param)
        if wanted:
            checks.append(attr_in(attr, wanted))
    if has_value and data_types:
        checks.append(_value_check(data_types[0], ctx.csv_param("value") or []))
    if q.get("valueMin") is not None:
        checks.append(lambda s: s.value is not None and s.value >= q["valueMin"])
    if q.get("valueMax") is not None:
        checks.append(lambda s: s.value is not None and s.value <= q["valueMax"])
    start, end = ctx.time_param("fromTimestamp"), ctx.time_param("toTimestamp")
    if start:
        checks.append(lambda s: s.timestamp >= start)
    if end:
        checks.append(lambda s: s.timestamp < end)
    return checks


def _value_check(data_type: str, values: list[str]) -> Callable[[Score], bool]:
    if data_type == "CATEGORICAL":
        return lambda s: s.string_value in values
    if data_type == "BOOLEAN":
        if any(v not in ("true", "false") for v in values):
            raise ApiError(400, "BOOLEAN values must be 'true' or 'false'", violation=True)
        wanted = {1.0 if v == "true" else 0.0 for v in values}
        return lambda s: s.value in wanted
    try:
        numbers = {float(v) for v in values}
    except ValueError:
        raise ApiError(400, "NUMERIC values must be finite numbers", violation=True) from None
    return lambda s: s.value in numbers


@route("GET", "/api/public/v3/scores")
def list_scores_v3(ctx: Ctx) -> Response:
    limit = ctx.int_param("limit", 50)
    if not 1 <= limit <= 100:
        raise ApiError(400, "limit must be between 1 and 100", violation=True)
    groups = field_groups(ctx.query.get("fields"), render.SCORE_V3_FIELD_GROUPS | {"core"}, frozenset())
    checks = _v3_checks(ctx)
    before = decode_cursor(ctx.query["cursor"]) if ctx.query.get("cursor") else None
    matching = [s for s in _newest_first(list(ctx.proj.scores.values()))
                if (before is None or (s.timestamp, s.id) < before) and all(check(s) for check in checks)]
    page = matching[:limit]
    meta: dict[str, Any] = {"limit": limit}
    if len(matching) > limit:
        meta["cursor"] = encode_cursor(page[-1].timestamp, page[-1].id)
    return Response(200, {"data": [render.score_v3(s, groups) for s in page], "meta": meta})


# ------------------------------------------------------------ score configs


def _check_config(config: ScoreConfig) -> None:
    """The consistency rules Langfuse enforces for score configs."""
    if config.data_type == "NUMERIC":
        if config.min_value is not None and config.max_value is not None and config.min_value > config.max_value:
            raise ApiError(400, "minValue must be less than or equal to maxValue", violation=True)
    elif config.data_type == "CATEGORICAL":
        categories = config.categories or []
        if not categories:
            raise ApiError(400, "CATEGORICAL score configs need at least one category", violation=True)
        if len({c["label"] for c in categories}) != len(categories) or \
                len({c["value"] for c in categories}) != len(categories):
            raise ApiError(400, "Category labels and values must be unique", violation=True)
    elif config.data_type == "BOOLEAN":
        config.categories = [{"label": "True", "value": 1}, {"label": "False", "value": 0}]


@route("POST", "/api/public/score-configs")
def create_score_config(ctx: Ctx) -> Response:
    body = ctx.body
    config = ScoreConfig(
        id=new_id(), project_id=ctx.proj.id, name=body["name"], data_type=body["dataType"],
        min_value=body.get("minValue"), max_value=body.get("maxValue"), categories=body.get("categories"),
        description=body.get("description"),
    )
    _check_config(config)
    ctx.proj.score_configs[config.id] = config
    return Response(200, render.score_config(config))


@route("GET", "/api/public/score-configs")
def list_score_configs(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    configs = sorted(ctx.proj.score_configs.values(), key=lambda c: (c.created_at, c.id), reverse=True)
    offset = (page - 1) * limit
    data = [render.score_config(c) for c in configs[offset: offset + limit]]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, len(configs))})


def _config(ctx: Ctx) -> ScoreConfig:
    config = ctx.proj.score_configs.get(ctx.path["configId"])
    if config is None:
        raise ApiError(404, "Score config not found")
    return config


@route("GET", "/api/public/score-configs/{configId}")
def get_score_config(ctx: Ctx) -> Response:
    return Response(200, render.score_config(_config(ctx)))


@route("PATCH", "/api/public/score-configs/{configId}")
def update_score_config(ctx: Ctx) -> Response:
    config = _config(ctx)
    updates = {"isArchived": "is_archived", "name": "name", "categories": "categories", "minValue": "min_value",
               "maxValue": "max_value", "description": "description"}
    for key, attr in updates.items():
        if key in ctx.body and ctx.body[key] is not None:
            setattr(config, attr, ctx.body[key])
    _check_config(config)
    config.updated_at = utcnow()
    return Response(200, render.score_config(config))
