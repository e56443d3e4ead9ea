"""Datasets, dataset items, dataset runs and their items, and experiments.

Experiments (v4) are derived, as in Langfuse, from two sources: dataset runs
(``POST /dataset-run-items``) and spans carrying ``langfuse.experiment.*``
attributes (the SDK experiment runner over OTLP). Both describe the same item when
the SDK writes a run item and spans, so items are de-duplicated by
(experiment id, observation id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from . import render
from .api_tracing import decode_cursor, encode_cursor, field_groups
from .errors import ApiError
from .filters import matches_all, parse_filter_param
from .models import Dataset, DatasetItem, DatasetRun, DatasetRunItem, Project, iso, new_id, parse_time_or_none, utcnow
from .routing import Ctx, Response, route
from .spec import describe_error

# ----------------------------------------------------------------- datasets


def _dataset(ctx: Ctx, name: str) -> Dataset:
    dataset = ctx.proj.datasets.get(name)
    if dataset is None:
        raise ApiError(404, f"Dataset {name} not found")
    return dataset


@route("GET", "/api/public/v2/datasets")
def list_datasets(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    datasets = sorted(ctx.proj.datasets.values(), key=lambda d: (d.created_at, d.id), reverse=True)
    offset = (page - 1) * limit
    data = [render.dataset(d) for d in datasets[offset: offset + limit]]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, len(datasets))})


@route("POST", "/api/public/v2/datasets")
def create_dataset(ctx: Ctx) -> Response:
    """Create a dataset; an existing name is updated (Langfuse upserts by name)."""
    body, project = ctx.body, ctx.proj
    for key in ("inputSchema", "expectedOutputSchema"):
        if body.get(key) is not None:
            _check_json_schema(body[key], key)
    dataset = project.datasets.get(body["name"])
    if dataset is None:
        dataset = Dataset(id=new_id(), project_id=project.id, name=body["name"])
        project.datasets[dataset.name] = dataset
    for key, attr in (("description", "description"), ("metadata", "metadata"), ("inputSchema", "input_schema"),
                      ("expectedOutputSchema", "expected_output_schema")):
        if key in body:
            setattr(dataset, attr, body[key])
    dataset.updated_at = utcnow()
    return Response(200, render.dataset(dataset))


@route("GET", "/api/public/v2/datasets/{datasetName}")
def get_dataset(ctx: Ctx) -> Response:
    return Response(200, render.dataset(_dataset(ctx, ctx.path["datasetName"])))


def _check_json_schema(schema: Any, name: str) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ApiError(400, f"{name} is not a valid JSON schema: {exc.message}") from None


def _validate_against(schema: Any, value: Any, what: str) -> None:
    """Dataset items must match the dataset's input/expected-output JSON schemas."""
    if schema is None:
        return
    validator = Draft202012Validator(schema)
    if not validator.is_valid(value):
        raise ApiError(400, f"{what} does not match the dataset schema: "
                            f"{describe_error(best_match(validator.iter_errors(value)))}")


# ------------------------------------------------------------ dataset items


@route("POST", "/api/public/dataset-items")
def upsert_dataset_item(ctx: Ctx) -> Response:
    body, project = ctx.body, ctx.proj
    dataset = _dataset(ctx, body["datasetName"])
    item_id = body.get("id") or new_id()
    item = project.dataset_items.get(item_id)
    if item is not None and item.dataset_id != dataset.id:
        raise ApiError(400, f"Dataset item {item_id} belongs to another dataset")
    updates = {attr: body[key] for key, attr in (
        ("input", "input"), ("expectedOutput", "expected_output"), ("metadata", "metadata"),
        ("sourceTraceId", "source_trace_id"), ("sourceObservationId", "source_observation_id"),
        ("status", "status")) if body.get(key) is not None}
    # Validate the resulting item before storing anything.
    _validate_against(dataset.input_schema, updates.get("input", item.input if item else None), "input")
    _validate_against(dataset.expected_output_schema,
                      updates.get("expected_output", item.expected_output if item else None), "expectedOutput")
    now = utcnow()
    if item is None:
        item = DatasetItem(id=item_id, project_id=project.id, dataset_id=dataset.id, dataset_name=dataset.name,
                           created_at=now)
        project.dataset_items[item_id] = item
    for attr, value in updates.items():
        setattr(item, attr, value)
    item.updated_at = now
    project.dataset_item_history.setdefault(item_id, []).append((now, render.dataset_item_snapshot(item)))
    return Response(200, render.dataset_item_snapshot(item))


@route("GET", "/api/public/dataset-items")
def list_dataset_items(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    q, project = ctx.query, ctx.proj
    version = ctx.time_param("version")
    if version is not None and not q.get("datasetName"):
        raise ApiError(400, "version requires datasetName", violation=True)
    dataset = _dataset(ctx, q["datasetName"]) if q.get("datasetName") else None
    if version is not None:
        snapshots = [snap for item_id in project.dataset_item_history
                     if (snap := _snapshot_at(project, item_id, version)) is not None]
    else:
        snapshots = [render.dataset_item_snapshot(item) for item in project.dataset_items.values()]
    rows = [s for s in snapshots
            if (dataset is None or s["datasetId"] == dataset.id)
            and (q.get("sourceTraceId") is None or s["sourceTraceId"] == q["sourceTraceId"])
            and (q.get("sourceObservationId") is None or s["sourceObservationId"] == q["sourceObservationId"])]
    rows.sort(key=lambda s: (s["createdAt"], s["id"]), reverse=True)
    offset = (page - 1) * limit
    return Response(200, {"data": rows[offset: offset + limit], "meta": render.page_meta(page, limit, len(rows))})


def _snapshot_at(project: Project, item_id: str, version: datetime) -> dict[str, Any] | None:
    current = None
    for valid_from, snapshot in project.dataset_item_history[item_id]:
        if valid_from > version:
            break
        current = snapshot
    return current


def _item(ctx: Ctx) -> DatasetItem:
    item = ctx.proj.dataset_items.get(ctx.path["id"])
    if item is None:
        raise ApiError(404, "Dataset item not found")
    return item


@route("GET", "/api/public/dataset-items/{id}")
def get_dataset_item(ctx: Ctx) -> Response:
    return Response(200, render.dataset_item_snapshot(_item(ctx)))


@route("DELETE", "/api/public/dataset-items/{id}")
def delete_dataset_item(ctx: Ctx) -> Response:
    item, project = _item(ctx), ctx.proj
    del project.dataset_items[item.id]
    project.dataset_item_history.setdefault(item.id, []).append((utcnow(), None))
    for run_item_id in [r.id for r in project.dataset_run_items.values() if r.dataset_item_id == item.id]:
        del project.dataset_run_items[run_item_id]
    return Response(200, {"message": "Dataset item successfully deleted"})


# ------------------------------------------------------------- dataset runs


@route("POST", "/api/public/dataset-run-items")
def create_dataset_run_item(ctx: Ctx) -> Response:
    """Link a trace/observation to a dataset item in a run (the run is created on first use)."""
    body, project = ctx.body, ctx.proj
    item = project.dataset_items.get(body["datasetItemId"])
    if item is None:
        raise ApiError(404, "Dataset item not found")
    trace_id, observation_id = body.get("traceId"), body.get("observationId")
    if not trace_id and observation_id:
        observation = project.observations.get(observation_id)
        trace_id = observation.trace_id if observation else None
    if not trace_id:
        raise ApiError(400, "traceId or the observationId of a known observation is required", violation=True)
    run = project.run_by_name(item.dataset_id, body["runName"])
    now = utcnow()
    if run is None:
        run = DatasetRun(id=new_id(), project_id=project.id, dataset_id=item.dataset_id, name=body["runName"],
                         description=body.get("runDescription"), metadata=body.get("metadata"), created_at=now)
        project.dataset_runs[run.id] = run
    else:
        run.description = body.get("runDescription") or run.description
        run.metadata = body.get("metadata") if body.get("metadata") is not None else run.metadata
        run.updated_at = now
    run_item = DatasetRunItem(id=new_id(), project_id=project.id, dataset_run_id=run.id, dataset_item_id=item.id,
                              trace_id=trace_id, observation_id=observation_id,
                              created_at=parse_time_or_none(body.get("createdAt")) or now, updated_at=now)
    project.dataset_run_items[run_item.id] = run_item
    return Response(200, render.dataset_run_item(run_item, run.name))


def _run_items(project: Project, run: DatasetRun) -> list[DatasetRunItem]:
    items = [i for i in project.dataset_run_items.values() if i.dataset_run_id == run.id]
    return sorted(items, key=lambda i: (i.created_at, i.id), reverse=True)


@route("GET", "/api/public/dataset-run-items")
def list_dataset_run_items(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    project = ctx.proj
    dataset = project.dataset_by_id(ctx.query["datasetId"])
    if dataset is None:
        raise ApiError(404, "Dataset not found")
    run = project.run_by_name(dataset.id, ctx.query["runName"])
    if run is None:
        raise ApiError(404, "Dataset run not found")
    items = _run_items(project, run)
    offset = (page - 1) * limit
    data = [render.dataset_run_item(i, run.name) for i in items[offset: offset + limit]]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, len(items))})


@route("GET", "/api/public/datasets/{datasetName}/runs")
def list_dataset_runs(ctx: Ctx) -> Response:
    page, limit = ctx.page_limit()
    dataset = _dataset(ctx, ctx.path["datasetName"])
    runs = sorted((r for r in ctx.proj.dataset_runs.values() if r.dataset_id == dataset.id),
                  key=lambda r: (r.created_at, r.id), reverse=True)
    offset = (page - 1) * limit
    data = [render.dataset_run(r, dataset.name) for r in runs[offset: offset + limit]]
    return Response(200, {"data": data, "meta": render.page_meta(page, limit, len(runs))})


def _run(ctx: Ctx) -> tuple[Dataset, DatasetRun]:
    dataset = _dataset(ctx, ctx.path["datasetName"])
    run = ctx.proj.run_by_name(dataset.id, ctx.path["runName"])
    if run is None:
        raise ApiError(404, "Dataset run not found")
    return dataset, run


@route("GET", "/api/public/datasets/{datasetName}/runs/{runName}")
def get_dataset_run(ctx: Ctx) -> Response:
    dataset, run = _run(ctx)
    body = render.dataset_run(run, dataset.name)
    body["datasetRunItems"] = [render.dataset_run_item(i, run.name) for i in _run_items(ctx.proj, run)]
    return Response(200, body)


@route("DELETE", "/api/public/datasets/{datasetName}/runs/{runName}")
def delete_dataset_run(ctx: Ctx) -> Response:
    _, run = _run(ctx)
    ctx.proj.delete_run(run.id)
    return Response(200, {"message": "Dataset run successfully deleted"})


# -------------------------------------------------------------- experiments


@dataclass
class ExperimentItem:
    id: str
    trace_id: str
    start: datetime
    end: datetime | None
    level: str
    environment: str
    experiment_id: str
    experiment_name: str
    item_id: str
    dataset_id: str | None
    input: Any = None
    output: Any = None
    expected_output: Any = None
    metadata: Any = None
    item_metadata: Any = None
    observation_id: str | None = None


@dataclass
class Experiment:
    id: str
    name: str
    description: str | None
    dataset_id: str | None
    metadata: Any
    created: datetime
    items: list[ExperimentItem] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return min((i.start for i in self.items), default=self.created)

    @property
    def end(self) -> datetime:
        return max(((i.end or i.start) for i in self.items), default=self.created)


def collect_experiments(project: Project) -> dict[str, Experiment]:
    """All experiments of a project: OTel experiment spans first, then dataset runs."""
    experiments: dict[str, Experiment] = {}
    seen: set[tuple[str, str]] = set()
    for obs in project.observations.values():
        exp = obs.experiment
        if not exp or exp.get("root_observation_id") not in (None, obs.id):
            continue
        experiment = experiments.setdefault(exp["id"], Experiment(
            id=exp["id"], name=exp.get("name") or exp["id"], description=exp.get("description"),
            dataset_id=exp.get("dataset_id"), metadata=exp.get("metadata"), created=obs.start_time))
        experiment.items.append(ExperimentItem(
            id=obs.id, trace_id=obs.trace_id, start=obs.start_time, end=obs.end_time, level=obs.level,
            environment=obs.environment, experiment_id=exp["id"], experiment_name=experiment.name,
            item_id=str(exp.get("item_id") or obs.id), dataset_id=exp.get("dataset_id"), input=obs.input,
            output=obs.output, expected_output=exp.get("expected_output"), metadata=obs.metadata,
            item_metadata=exp.get("item_metadata"), observation_id=obs.id))
        seen.add((exp["id"], obs.id))
    for run in project.dataset_runs.values():
        experiment = experiments.setdefault(run.id, Experiment(
            id=run.id, name=run.name, description=run.description, dataset_id=run.dataset_id,
            metadata=run.metadata, created=run.created_at))
        for run_item in project.dataset_run_items.values():
            if run_item.dataset_run_id != run.id or (run.id, run_item.observation_id or "") in seen:
                continue
            experiment.items.append(_run_experiment_item(project, run, run_item))
    return experiments


def _run_experiment_item(project: Project, run: DatasetRun, run_item: DatasetRunItem) -> ExperimentItem:
    obs = project.observations.get(run_item.observation_id) if run_item.observation_id else None
    trace = project.traces.get(run_item.trace_id)
    item = project.dataset_items.get(run_item.dataset_item_id)
    source: Any = obs or trace
    return ExperimentItem(
        id=run_item.id, trace_id=run_item.trace_id,
        start=obs.start_time if obs else (trace.timestamp if trace else run_item.created_at),
        end=obs.end_time if obs else None, level=obs.level if obs else "DEFAULT",
        environment=source.environment if source else "default", experiment_id=run.id,
        experiment_name=run.name, item_id=run_item.dataset_item_id, dataset_id=run.dataset_id,
        input=source.input if source else (item.input if item else None),
        output=source.output if source else None, expected_output=item.expected_output if item else None,
        metadata=source.metadata if source else None, item_metadata=item.metadata if item else None,
        observation_id=run_item.observation_id,
    )


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _experiment_scores(project: Project, experiment_id: str, limit: int) -> list[dict[str, Any]]:
    scores = [s for s in project.scores.values() if s.dataset_run_id == experiment_id]
    scores.sort(key=lambda s: (s.timestamp, s.id), reverse=True)
    return [render.score_v3(s, frozenset({"details", "subject"})) for s in scores[:limit]]


def _item_scores(project: Project, item: ExperimentItem, limit: int) -> list[dict[str, Any]]:
    scores = [s for s in project.trace_scores(item.trace_id)
              if s.observation_id in (None, item.observation_id)]
    scores.sort(key=lambda s: (s.timestamp, s.id), reverse=True)
    return [render.score_v3(s, frozenset({"details", "subject"})) for s in scores[:limit]]


def _limits(ctx: Ctx) -> tuple[int, int]:
    limit = ctx.int_param("limit", 50)
    score_limit = ctx.int_param("scoreLimit", 50)
    if not 1 <= limit <= 100:
        raise ApiError(400, "limit must be between 1 and 100", violation=True)
    if not 1 <= score_limit <= 50:
        raise ApiError(400, "scoreLimit must be between 1 and 50", violation=True)
    return limit, score_limit


def _required_time(ctx: Ctx, name: str) -> datetime:
    value = ctx.time_param(name)
    if value is None:  # the spec marks it required, so validation already answered 400
        raise ApiError(400, f"{name} is required", violation=True)
    return value


def _csv_check(ctx: Ctx, param: str, get: Callable[[Any], Any]) -> Callable[[Any], bool] | None:
    wanted = ctx.csv_param(param)
    return (lambda r: get(r) in wanted) if wanted else None


def _page_by_cursor(ctx: Ctx, rows: list[Any], key: Callable[[Any], tuple[datetime, str]], limit: int
                    ) -> tuple[list[Any], dict[str, Any]]:
    rows.sort(key=key, reverse=True)
    if ctx.query.get("cursor"):
        before = decode_cursor(ctx.query["cursor"])
        rows = [r for r in rows if key(r) < before]
    page = rows[:limit]
    meta: dict[str, Any] = {}
    if len(rows) > limit:
        meta["cursor"] = encode_cursor(*key(page[-1]))
    return page, meta


@route("GET", "/api/public/experiments")
def list_experiments(ctx: Ctx) -> Response:
    limit, score_limit = _limits(ctx)
    groups = field_groups(ctx.query.get("fields"), frozenset({"core", "metadata", "scores"}), frozenset({"core"}))
    start, end = _required_time(ctx, "fromStartTime"), ctx.time_param("toStartTime")
    checks = [c for c in (_csv_check(ctx, "id", lambda e: e.id), _csv_check(ctx, "name", lambda e: e.name),
                          _csv_check(ctx, "datasetId", lambda e: e.dataset_id)) if c]
    conditions = parse_filter_param(ctx.query.get("filter"))
    if conditions is not None:
        getter = _experiment_column({"id": "id", "name": "name", "datasetId": "dataset_id"})
        checks.append(lambda e: matches_all(e, conditions, getter))
    rows = [e for e in collect_experiments(ctx.proj).values()
            if e.start >= start and (end is None or e.start < end) and all(c(e) for c in checks)]
    page, meta = _page_by_cursor(ctx, rows, lambda e: (e.end, e.id), limit)
    data = []
    for e in page:
        row: dict[str, Any] = {"id": e.id, "name": e.name, "description": e.description, "startTime": iso(e.start),
                               "endTime": iso(e.end), "itemCount": len(e.items), "datasetId": e.dataset_id}
        if "metadata" in groups:
            row["metadata"] = _dict_or_none(e.metadata)
        if "scores" in groups:
            row["scores"] = _experiment_scores(ctx.proj, e.id, score_limit)
        data.append(row)
    return Response(200, {"data": data, "meta": meta})


def _experiment_column(columns: dict[str, str]) -> Callable[[Any, str, str | None], Any]:
    def get(record: Any, column: str, key: str | None) -> Any:
        if column not in columns:
            raise ApiError(400, f"Invalid filter column {column!r}; supported: {', '.join(columns)}",
                           violation=True)
        return getattr(record, columns[column])

    return get


EXPERIMENT_ITEM_GROUPS = frozenset(
    {"core", "dataset", "io", "metadata", "itemMetadata", "experimentMetadata", "scores"})


@route("GET", "/api/public/experiment-items")
def list_experiment_items(ctx: Ctx) -> Response:
    limit, score_limit = _limits(ctx)
    groups = field_groups(ctx.query.get("fields"), EXPERIMENT_ITEM_GROUPS, frozenset({"core", "dataset"}))
    start, end = _required_time(ctx, "fromStartTime"), ctx.time_param("toStartTime")
    experiments = collect_experiments(ctx.proj)
    checks = [c for c in (
        _csv_check(ctx, "experimentId", lambda i: i.experiment_id),
        _csv_check(ctx, "experimentName", lambda i: i.experiment_name),
        _csv_check(ctx, "experimentItemId", lambda i: i.item_id),
        _csv_check(ctx, "datasetId", lambda i: i.dataset_id)) if c]
    conditions = parse_filter_param(ctx.query.get("filter"))
    if conditions is not None:
        getter = _experiment_column({"experimentId": "experiment_id", "experimentName": "experiment_name",
                                     "experimentItemId": "item_id", "datasetId": "dataset_id"})
        checks.append(lambda i: matches_all(i, conditions, getter))
    rows = [i for e in experiments.values() for i in e.items
            if i.start >= start and (end is None or i.start < end) and all(c(i) for c in checks)]
    page, meta = _page_by_cursor(ctx, rows, lambda i: (i.start, i.id), limit)
    data = [_experiment_item(ctx.proj, experiments[i.experiment_id], i, groups, score_limit) for i in page]
    return Response(200, {"data": data, "meta": meta})


def _experiment_item(project: Project, experiment: Experiment, item: ExperimentItem, groups: frozenset[str],
                     score_limit: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": item.id, "traceId": item.trace_id, "startTime": iso(item.start), "endTime": iso(item.end),
        "level": item.level, "environment": item.environment, "experimentId": item.experiment_id,
        "experimentName": item.experiment_name, "experimentItemId": item.item_id,
    }
    if "dataset" in groups:
        row.update({"experimentDatasetId": item.dataset_id, "experimentItemVersion": None})
    if "io" in groups:
        row.update({"input": item.input, "output": item.output, "expectedOutput": item.expected_output})
    if "metadata" in groups:
        row["metadata"] = _dict_or_none(item.metadata)
    if "itemMetadata" in groups:
        row["experimentItemMetadata"] = _dict_or_none(item.item_metadata)
    if "experimentMetadata" in groups:
        row.update({"experimentMetadata": _dict_or_none(experiment.metadata),
                    "experimentDescription": experiment.description})
    if "scores" in groups:
        row["scores"] = _item_scores(project, item, score_limit)
    return row
