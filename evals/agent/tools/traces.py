"""search_traces and read_trace: the project's traces in its own Langfuse (through the project's keys,
so another project's traces are not reachable), with the route and errors of the portal's usage
records and the portal's evaluation scores of the same project."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from evals.agent.tools.base import (
    MAX_RESULT_CHARS,
    MAX_ROWS,
    NAME,
    TIME,
    TRACE_ID_PATTERN,
    UNTRUSTED,
    Range,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    clip,
    compact,
    iso,
    parse_time,
    result,
    schema,
    snippet,
    time_range,
)
from evals.agent.tools.usage import service_keys
from evals.gateway_client import PORTAL_TAG
from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import EvalScore, ScoreStatus
from gateway.models import UsageRecord

MAX_SCAN = 2000  # traces read from Langfuse for one search
MAX_OBSERVATION_SCAN = 5000  # observations of level ERROR read to find the traces with an error
ROUTE_METADATA_KEYS = ("route", "model_group", "portal_route")  # when no usage record names the trace's route
ORDERS = ("newest", "oldest", "slowest", "costliest")


def langfuse_of(ctx: ToolContext) -> LangfuseClient:
    if ctx.langfuse is None:
        raise ToolError("this project has no Langfuse connection: its traces cannot be read")
    return ctx.langfuse


# search_traces -------------------------------------------------------

SEARCH_SCHEMA = schema({
    "from": TIME, "to": TIME,
    "name": NAME | {"description": "The trace's name, exactly."},
    "tags": {"type": "array", "items": NAME, "maxItems": 10, "description": "Traces that have all these tags."},
    "route": {"type": "string", "minLength": 1, "maxLength": 100, "description": "The portal's public route name."},
    "user_id": NAME,
    "scores": {"type": "array", "maxItems": 5, "description": "Evaluator score ranges (the portal's scores).",
               "items": schema({"evaluator": {"type": "string", "minLength": 1, "maxLength": 100},
                                "min": {"type": "number"}, "max": {"type": "number"}}, ("evaluator",))},
    "min_latency_ms": {"type": "number", "minimum": 0}, "max_latency_ms": {"type": "number", "minimum": 0},
    "min_cost": {"type": "number", "minimum": 0, "description": "USD."},
    "max_cost": {"type": "number", "minimum": 0, "description": "USD."},
    "errors_only": {"type": "boolean", "description": "Only traces with an error (an observation of level "
                                                      "ERROR or a failed gateway request)."},
    "text": {"type": "string", "minLength": 2, "maxLength": 200,
             "description": "A substring of the input or output (case-insensitive)."},
    "order": {"enum": list(ORDERS), "description": "Row order (default newest)."},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS, "description": "Rows to return (default 20)."},
})


def search_traces(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    span = time_range(ctx, args)
    for low, high in (("min_latency_ms", "max_latency_ms"), ("min_cost", "max_cost")):
        if low in args and high in args and args[low] > args[high]:
            raise ToolError(f"argument {low} is greater than {high}")
    for i, wanted in enumerate(args.get("scores", [])):
        if "min" in wanted and "max" in wanted and wanted["min"] > wanted["max"]:
            raise ToolError(f"argument scores[{i}]: min is greater than max")
    client = langfuse_of(ctx)
    order = args.get("order", "newest")
    # Langfuse filters by name, tags and user itself and lists in the asked order (by time; slowest and
    # costliest sort the newest MAX_SCAN), so the scan holds the traces the search is about.
    server_side: dict[str, Any] = {k: v for k, v in (("name", args.get("name")), ("tags", args.get("tags")),
                                                      ("user_id", args.get("user_id"))) if v}
    scan = list(islice(client.traces(from_time=iso(span.start), to_time=iso(span.end), limit=100,
                                     order_by="timestamp.asc" if order == "oldest" else "timestamp.desc",
                                     fields=TRACE_FIELDS, **server_side), MAX_SCAN + 1))
    scan_truncated = len(scan) > MAX_SCAN
    traces = [t for t in scan[:MAX_SCAN] if PORTAL_TAG not in (t.get("tags") or [])]
    ids = [str(t["id"]) for t in traces]
    usage = usage_by_trace(ctx, ids)
    scores = scores_by_trace(ctx, ids)
    rows = [trace_row(t, usage.get(str(t["id"])), scores.get(str(t["id"]), {}), bool(usage.get(str(t["id"]), {})
                                                                                    .get("error")))
            for t in traces]
    matching = [r for r, t in zip(rows, traces, strict=True) if matches(args, r, t)]
    errors_note = ""
    if matching or args.get("errors_only"):  # the rows show has_error: Langfuse's ERROR observations
        errors, errors_note = error_traces(client, span, usage)
        for row in matching:
            row["has_error"] = row["has_error"] or row["id"] in errors
        if args.get("errors_only"):
            matching = [r for r in matching if r["has_error"]]
    if order in ("slowest", "costliest"):
        measure = "latency_ms" if order == "slowest" else "cost"
        matching.sort(key=lambda r: -(r[measure] or 0.0))
    limit = args.get("limit", 20)
    window_total = count_traces(client, span)
    matched = len(matching)
    notes = [UNTRUSTED]
    if scan_truncated and not set(args) & LOCAL_FILTERS:  # Langfuse did all the filtering: it counts them
        matched = count_traces(client, span, **server_side)
    elif scan_truncated:
        which = "oldest" if order == "oldest" else "newest"
        notes.append(f"more than {MAX_SCAN} traces match {describe(server_side)} in the range: only the {which} "
                     f"{MAX_SCAN} (back to {scan[MAX_SCAN - 1].get('timestamp')}) were searched for the other "
                     "conditions, so matched counts only those; narrow the time range")
    if errors_note:
        notes.append(errors_note)
    data: dict[str, Any] = {
        "range": span.describe(), "matched": matched, "window_total": window_total, "scanned": len(traces),
        "scan_truncated": scan_truncated, "rows": matching[:limit],
    }
    return result(data, truncated=scan_truncated or len(matching) > limit, notes=notes)


TRACE_FIELDS = "core,io,metrics"  # not the scores' and observations' ids
LOCAL_FILTERS = frozenset({"route", "errors_only", "min_latency_ms", "max_latency_ms", "min_cost", "max_cost",
                           "scores", "text"})  # the conditions the portal checks itself, after Langfuse's


def describe(server_side: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in server_side.items()) if server_side else "no name, tag or user"


def count_traces(client: LangfuseClient, span: Range, *, name: str | None = None, tags: list[str] | None = None,
                 user_id: str | None = None) -> int:
    """The traces in the range that match (Langfuse's count), not counting the portal's own traces."""
    window = {"from_time": iso(span.start), "to_time": iso(span.end), "name": name, "user_id": user_id}
    return client.trace_count(tags=tags, **window) - client.trace_count(tags=[*(tags or []), PORTAL_TAG], **window)


def matches(args: dict[str, Any], row: dict[str, Any], trace: dict[str, Any]) -> bool:
    """The conditions the portal checks itself (name, tags and user are Langfuse's; errors_only is
    checked after the error scan)."""
    if "name" in args and trace.get("name") != args["name"]:
        return False
    if "tags" in args and not set(args["tags"]) <= set(trace.get("tags") or []):
        return False
    if "user_id" in args and trace.get("userId") != args["user_id"]:
        return False
    if "route" in args and row["route"] != args["route"]:
        return False
    for low, high, measure in (("min_latency_ms", "max_latency_ms", "latency_ms"), ("min_cost", "max_cost", "cost")):
        value = row[measure]
        if (low in args or high in args) and value is None:
            return False
        if (low in args and value < args[low]) or (high in args and value > args[high]):
            return False
    for wanted in args.get("scores", []):
        value = row["scores"].get(wanted["evaluator"])
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if ("min" in wanted and value < wanted["min"]) or ("max" in wanted and value > wanted["max"]):
            return False
    if "text" in args:
        needle = args["text"].casefold()
        haystack = " ".join(strings(trace.get(k)) for k in ("input", "output")).casefold()
        if needle not in haystack:
            return False
    return True


def strings(value: Any, budget: int = 200_000) -> str:
    """The text of an input or output: its strings (the messages' contents), not their JSON encoding."""
    found: list[str] = []
    stack = [value]
    while stack and budget > 0:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item[:budget])
            budget -= len(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return " ".join(found)


def trace_row(trace: dict[str, Any], usage: dict[str, Any] | None, scores: dict[str, Any], has_error: bool
              ) -> dict[str, Any]:
    latency, cost = trace.get("latency"), trace.get("totalCost")
    latency_ms = float(latency) * 1000 if isinstance(latency, int | float) and latency >= 0 else None
    cost_usd = float(cost) if isinstance(cost, int | float) and cost >= 0 else None
    if usage is not None:
        latency_ms = latency_ms if latency_ms is not None else usage["latency_ms"]
        cost_usd = cost_usd if cost_usd else usage["cost"]
    return {
        "id": str(trace["id"]), "timestamp": trace.get("timestamp"), "name": clip(trace.get("name"), 100)[0],
        "route": usage["route"] if usage else route_of(trace), "user_id": clip(trace.get("userId"), 100)[0],
        "latency_ms": round(latency_ms, 1) if latency_ms is not None else None,
        "cost": round(cost_usd, 9) if cost_usd is not None else None,
        "scores": scores, "has_error": has_error,
        "input": snippet(trace.get("input")), "output": snippet(trace.get("output")),
    }


def route_of(trace: dict[str, Any]) -> str | None:
    metadata = trace.get("metadata")
    if isinstance(metadata, dict):
        for key in ROUTE_METADATA_KEYS:
            if isinstance(metadata.get(key), str):
                return metadata[key][:100]
    return None


def usage_by_trace(ctx: ToolContext, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The application's request records of this project for these traces (not the portal's own, by
    its service key): route, cost, latency, error."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids, 500):
        for trace_id, route, cost, latency, status, error_class in (
                UsageRecord.objects.filter(project=ctx.project, trace_id__in=chunk)
                .exclude(key__in=service_keys(ctx)).order_by("created_at")
                .values_list("trace_id", "route", "cost", "latency_ms", "status", "error_class")):
            row = out.setdefault(trace_id, {"route": route, "cost": 0.0, "latency_ms": 0.0, "error": False})
            row["cost"] += float(cost)
            row["latency_ms"] += float(latency)
            row["error"] = row["error"] or status != "success" or bool(error_class)
    return out


def scores_by_trace(ctx: ToolContext, ids: list[str]) -> dict[str, dict[str, Any]]:
    """This project's scored evaluations of these traces, by evaluator (the newest version's score)."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids, 500):
        rows = (EvalScore.objects.filter(project=ctx.project, trace_id__in=chunk, status=ScoreStatus.SCORED)
                .order_by("evaluator_version__version")
                .values_list("trace_id", "evaluator_version__evaluator__name", "value", "label"))
        for trace_id, evaluator, value, label in rows:
            out.setdefault(trace_id, {})[evaluator] = value if value is not None else label
    return out


def error_traces(client: LangfuseClient, span: Range, usage: dict[str, dict[str, Any]]) -> tuple[set[str], str]:
    """Traces with a failed gateway request or an observation of level ERROR (observations are read
    by time range on v4 servers only), and a note when not every observation of the range was read."""
    errors = {trace_id for trace_id, row in usage.items() if row["error"]}
    if client.server().api != "v4":
        return errors, ("this Langfuse (v3) lists observations without a time range: errors come from the "
                        "gateway's records only")
    observations = list(islice(client.observations(from_time=iso(span.start), to_time=iso(span.end), limit=1000,
                                                   level="ERROR", fields="core"), MAX_OBSERVATION_SCAN + 1))
    errors |= {str(o.get("traceId")) for o in observations[:MAX_OBSERVATION_SCAN]}
    if len(observations) > MAX_OBSERVATION_SCAN:
        return errors, (f"the range holds more than {MAX_OBSERVATION_SCAN} observations of level ERROR: only the "
                        "newest were read (and the gateway's records)")
    return errors, ""


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# read_trace ----------------------------------------------------------

READ_SCHEMA = schema({"trace_id": {"type": "string", "pattern": TRACE_ID_PATTERN, "maxLength": 100}}, ("trace_id",))
MAX_OBSERVATIONS = 30
TRACE_FIELD_CHARS, OBSERVATION_FIELD_CHARS = 1500, 500


def read_trace(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    trace_id = args["trace_id"]
    client = langfuse_of(ctx)
    try:
        trace = client.trace(trace_id)
    except LangfuseError as exc:
        if exc.status == 404:
            raise ToolError(f"trace {trace_id} not found in this project") from None
        raise
    if str(trace.get("id")) != trace_id:
        raise ToolError(f"trace {trace_id} not found in this project")
    when = trace.get("timestamp")
    if isinstance(when, str) and not inside(ctx, when):
        raise ToolError(f"trace {trace_id} ({when}) is outside the report's window "
                        f"{iso(ctx.window_start)} .. {iso(ctx.window_end)}")
    cut = False
    shown: dict[str, Any] = {"id": trace_id, "timestamp": when}
    for key, limit in (("name", 200), ("userId", 100), ("sessionId", 100), ("input", TRACE_FIELD_CHARS),
                       ("output", TRACE_FIELD_CHARS), ("metadata", 800)):
        shown[key], was_cut = clip(trace.get(key), limit)
        cut = cut or was_cut
    tags = [str(t) for t in trace.get("tags") or []]
    shown["tags"] = [clip(t, 100)[0] for t in tags[:20]]
    cut = cut or len(tags) > 20 or any(len(t) > 100 for t in tags[:20])
    latency, cost = trace.get("latency"), trace.get("totalCost")
    shown["latency_ms"] = round(float(latency) * 1000, 1) if isinstance(latency, int | float) and latency >= 0 else None
    shown["cost"] = float(cost) if isinstance(cost, int | float) and cost >= 0 else None
    usage = usage_by_trace(ctx, [trace_id]).get(trace_id)
    shown["route"] = usage["route"] if usage else route_of(trace)
    shown["scores"] = scores_by_trace(ctx, [trace_id]).get(trace_id, {})
    observations = [o for o in trace.get("observations") or [] if isinstance(o, dict)]
    if not observations:
        observations = list(islice(client.observations(trace_id=trace_id), MAX_OBSERVATIONS + 1))
    observations.sort(key=lambda o: str(o.get("startTime") or ""))
    notes = [UNTRUSTED]
    if len(observations) > MAX_OBSERVATIONS:
        notes.append(f"only the first {MAX_OBSERVATIONS} observations are shown")
        cut = True
    rows = []
    for o in observations[:MAX_OBSERVATIONS]:
        row: dict[str, Any] = {k: o.get(k) for k in ("id", "type", "startTime", "endTime", "level", "model")}
        for key, limit in (("name", 200), ("statusMessage", 300), ("input", OBSERVATION_FIELD_CHARS),
                           ("output", OBSERVATION_FIELD_CHARS)):
            row[key], was_cut = clip(o.get(key), limit)
            cut = cut or was_cut
        row["cost"] = o.get("calculatedTotalCost") if o.get("calculatedTotalCost") is not None else o.get("totalCost")
        row["usage"] = o.get("usageDetails")
        rows.append(row)
    if cut:
        notes.append("long fields were cut (marked …)")
    shown["has_error"] = bool(usage and usage["error"]) or any(r["level"] == "ERROR" for r in rows)
    data: dict[str, Any] = {"trace": shown, "observations": rows, "notes": notes}
    while len(compact(data)) > MAX_RESULT_CHARS - 100 and data["observations"]:
        rows.pop()
        cut = True
        data["notes"] = [*notes, f"observations cut to {len(rows)} to fit the result"]
    return result(data, truncated=cut, notes=data.pop("notes"))


def inside(ctx: ToolContext, when: str) -> bool:
    try:
        moment = parse_time(when, "timestamp")
    except ToolError:
        return True
    return ctx.window_start <= moment <= ctx.window_end


TOOLS = [
    Tool("search_traces", "Find the project's traces in the report's window by time, name, tags, route, user, "
         "evaluator score range, latency, cost, errors or a text in the input/output. Returns rows (id, time, "
         "route, latency, cost, scores, error, short input/output), how many matched and how many traces the "
         "range holds.", SEARCH_SCHEMA, search_traces),
    Tool("read_trace", "Read one trace of the project with its observations (fields bounded).", READ_SCHEMA,
         read_trace),
]
