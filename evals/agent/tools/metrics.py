"""langfuse_metrics: the Langfuse metrics API (v2; v1 on v3 servers) as a query this module builds
from typed, enumerated arguments. The model never sends a query: it picks a view, measures with
aggregations, dimensions and filters from the lists of the spec (/api/public/v2/metrics), and the
time range is always the report's window (or a part of it)."""

from __future__ import annotations

from typing import Any

from evals.agent.tools.base import MAX_ROWS, TIME, Tool, ToolContext, ToolError, ToolResult, iso, result, schema
from evals.agent.tools.base import time_range as clipped_range
from evals.agent.tools.traces import langfuse_of

AGGREGATIONS = ("sum", "avg", "count", "max", "min", "p50", "p75", "p90", "p95", "p99", "histogram")
GRANULARITIES = ("auto", "minute", "hour", "day", "week", "month")
SCORE_DIMENSIONS = ("environment", "name", "source", "dataType", "configId", "timestampMonth", "timestampDay",
                    "traceName", "tags", "traceRelease", "traceVersion", "observationName", "observationModelName",
                    "observationPromptName", "observationPromptVersion")
VIEWS: dict[str, dict[str, tuple[str, ...]]] = {
    "observations": {
        "measures": ("count", "latency", "streamingLatency", "inputTokens", "outputTokens", "totalTokens",
                     "outputTokensPerSecond", "tokensPerSecond", "inputCost", "outputCost", "totalCost",
                     "timeToFirstToken", "countScores"),
        "dimensions": ("environment", "type", "name", "level", "version", "tags", "release", "traceName",
                       "traceRelease", "traceVersion", "providedModelName", "promptName", "promptVersion",
                       "isRootObservation", "startTimeMonth"),
        "filter_only": ("traceId", "userId", "sessionId", "id", "parentObservationId"),
    },
    "scores-numeric": {"measures": ("count", "value"), "dimensions": (*SCORE_DIMENSIONS, "value"),
                       "filter_only": ("traceId", "userId", "sessionId", "id", "observationId")},
    "scores-boolean": {"measures": ("count", "value"), "dimensions": (*SCORE_DIMENSIONS, "value", "booleanValue"),
                       "filter_only": ("traceId", "userId", "sessionId", "id", "observationId")},
    "scores-categorical": {"measures": ("count",), "dimensions": (*SCORE_DIMENSIONS, "stringValue"),
                           "filter_only": ("traceId", "userId", "sessionId", "id", "observationId")},
}
ALL_MEASURES = sorted({m for v in VIEWS.values() for m in v["measures"]})
ALL_COLUMNS = sorted({c for v in VIEWS.values() for c in (*v["measures"], *v["dimensions"], *v["filter_only"])}
                     | {"metadata"})
NUMBER_COLUMNS = frozenset({*ALL_MEASURES, "value", "promptVersion", "observationPromptVersion"})
BOOLEAN_COLUMNS = frozenset({"isRootObservation", "booleanValue"})
ARRAY_COLUMNS = frozenset({"tags"})
# The operators per kind of column, and the Langfuse filter type each becomes.
STRING_OPERATORS = ("=", "contains", "does not contain", "starts with", "ends with")
OPTION_OPERATORS = ("any of", "none of")
NUMBER_OPERATORS = ("=", ">", "<", ">=", "<=", "!=")
OPERATORS = sorted({*STRING_OPERATORS, *OPTION_OPERATORS, *NUMBER_OPERATORS, "all of", "is null", "is not null"})

SCALAR = {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "number"}, {"type": "boolean"},
                    {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 20}]}
SCHEMA = schema({
    "view": {"enum": list(VIEWS)},
    "metrics": {"type": "array", "minItems": 1, "maxItems": 5,
                "items": schema({"measure": {"enum": ALL_MEASURES}, "aggregation": {"enum": list(AGGREGATIONS)}},
                                ("measure", "aggregation"))},
    "dimensions": {"type": "array", "maxItems": 2, "uniqueItems": True, "items": {"type": "string", "maxLength": 40},
                   "description": "Fields to group by (the view's dimensions; ids, users and sessions only filter)."},
    "filters": {"type": "array", "maxItems": 10, "items": schema({
        "column": {"enum": ALL_COLUMNS}, "operator": {"enum": OPERATORS}, "value": SCALAR,
        "key": {"type": "string", "minLength": 1, "maxLength": 100, "description": "The metadata key (column "
                                                                                   "metadata only)."}},
        ("column", "operator"))},
    "granularity": {"enum": list(GRANULARITIES), "description": "Group by time too."},
    "order_by": schema({"field": {"type": "string", "maxLength": 60}, "direction": {"enum": ["asc", "desc"]}},
                       ("field", "direction")),
    "from": TIME, "to": TIME,
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS, "description": "Rows (default 50)."},
    "bins": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Histogram bins (default 10)."},
}, ("view", "metrics"))


def build_query(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """The metrics query object, from the arguments, for the report's window."""
    view = VIEWS[args["view"]]
    span = clipped_range(ctx, args)
    for i, metric in enumerate(args["metrics"]):
        if metric["measure"] not in view["measures"]:
            raise ToolError(f"argument metrics[{i}].measure: {metric['measure']!r} is not a measure of view "
                            f"{args['view']}; one of {', '.join(view['measures'])}")
    for i, dimension in enumerate(args.get("dimensions", [])):
        if dimension not in view["dimensions"]:
            hint = " (it can only filter)" if dimension in view["filter_only"] else ""
            raise ToolError(f"argument dimensions[{i}]: {dimension[:40]!r} is not a dimension of view "
                            f"{args['view']}{hint}; one of {', '.join(view['dimensions'])}")
    query: dict[str, Any] = {
        "view": args["view"],
        "metrics": [{"measure": m["measure"], "aggregation": m["aggregation"]} for m in args["metrics"]],
        "dimensions": [{"field": d} for d in args.get("dimensions", [])],
        "filters": [condition(args["view"], view, i, f) for i, f in enumerate(args.get("filters", []))],
        "fromTimestamp": iso(span.start), "toTimestamp": iso(span.end),
        "config": {"row_limit": args.get("limit", MAX_ROWS) + 1, "bins": args.get("bins", 10)},
    }
    if args.get("granularity"):
        query["timeDimension"] = {"granularity": args["granularity"]}
    if order := args.get("order_by"):
        aliases = {f"{m['aggregation']}_{m['measure']}" for m in args["metrics"]} | set(args.get("dimensions", []))
        if order["field"] not in aliases:
            raise ToolError(f"argument order_by.field: one of {', '.join(sorted(aliases))}")
        query["orderBy"] = [{"field": order["field"], "direction": order["direction"]}]
    return query | {"_range": span}


def condition(view_name: str, view: dict[str, tuple[str, ...]], i: int, f: dict[str, Any]) -> dict[str, Any]:
    """One Langfuse filter condition, its type chosen by the column, its operator and value checked."""
    column, operator, value = f["column"], f["operator"], f.get("value")
    where = f"argument filters[{i}]"
    if column != "metadata" and column not in (*view["measures"], *view["dimensions"], *view["filter_only"]):
        raise ToolError(f"{where}.column: {column!r} is not a column of view {view_name}")
    if ("key" in f) != (column == "metadata"):
        raise ToolError(f"{where}.key: a key is given for the column metadata, and only for it")
    if operator in ("is null", "is not null"):
        return {"type": "null", "column": column, "operator": operator, "value": ""}
    if value is None:
        raise ToolError(f"{where}.value: required for operator {operator!r}")

    def need(kind: str, operators: tuple[str, ...], ok: bool) -> None:
        if operator not in operators:
            raise ToolError(f"{where}.operator: for column {column} one of {', '.join(operators)}")
        if not ok:
            raise ToolError(f"{where}.value: {kind} for column {column} and operator {operator!r}")

    if column in ARRAY_COLUMNS:
        need("a list of strings", (*OPTION_OPERATORS, "all of"), is_strings(value))
        return {"type": "arrayOptions", "column": column, "operator": operator, "value": value}
    if column in BOOLEAN_COLUMNS:
        need("true or false", ("=",), isinstance(value, bool))
        return {"type": "boolean", "column": column, "operator": "=", "value": value}
    if column in NUMBER_COLUMNS:
        need("a number", NUMBER_OPERATORS, isinstance(value, int | float) and not isinstance(value, bool))
        return {"type": "number", "column": column, "operator": operator, "value": value}
    if column == "metadata":
        need("a string", STRING_OPERATORS, isinstance(value, str))
        return {"type": "stringObject", "column": column, "key": f["key"], "operator": operator, "value": value}
    if operator in OPTION_OPERATORS:
        need("a list of strings", OPTION_OPERATORS, is_strings(value))
        return {"type": "stringOptions", "column": column, "operator": operator, "value": value}
    need("a string", STRING_OPERATORS, isinstance(value, str))
    return {"type": "string", "column": column, "operator": operator, "value": value}


def is_strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def langfuse_metrics(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    query = build_query(ctx, args)
    span = query.pop("_range")
    rows = langfuse_of(ctx).metrics(query)
    limit = args.get("limit", MAX_ROWS)
    data = {"range": span.describe(), "query": query, "rows": rows[:limit]}
    cut = len(rows) > limit
    return result(data, truncated=cut, notes=[f"more than {limit} rows: narrow the query"] if cut else [], id_key="")


TOOLS = [Tool("langfuse_metrics", "Aggregates from the project's Langfuse metrics API: pick a view (observations, "
              "scores-numeric, scores-boolean, scores-categorical), measures with aggregations, up to two dimensions, "
              "filters and a time granularity. Observation measures: " + ", ".join(VIEWS["observations"]["measures"])
              + "; observation dimensions: " + ", ".join(VIEWS["observations"]["dimensions"])
              + "; score dimensions: " + ", ".join(SCORE_DIMENSIONS) + " (latency in ms, cost in USD).",
              SCHEMA, langfuse_metrics)]
