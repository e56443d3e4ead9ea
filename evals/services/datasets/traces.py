"""Items built from a project's Langfuse traces: a time window and the filters of evaluation schedules
choose them; the same trace always makes the same item, so building again updates it. Builds of more
than INLINE_ITEMS items run on a worker (`background.build_in_background`)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from evals.langfuse_client import LangfuseClient
from evals.models import Dataset
from evals.services.datasets.limits import INLINE_ITEMS, MAX_BUILD_ITEMS, SCAN_PER_ITEM
from evals.services.datasets.store import WriteResult, langfuse_connection, require_manager, upsert_items
from evals.services.datasets.values import ItemRow, item_problems
from evals.services.runs import matches
from portal import audit
from portal.access import Actor

ITEM_NAMESPACE = uuid.UUID("0b8f6f4e-5d7c-4a43-9c2e-7e1d3a5b9f10")
FILTERS = frozenset({"name", "tags", "user_id", "environment", "metadata"})


@dataclass
class BuildSpec:
    """Which traces become items: a time window, the filters of evaluation
    schedules, at most `max_items`; the trace's output becomes the expected
    output, or (`output_as="metadata"`) goes to `metadata.output`, leaving the
    expected output for a person to fill in (a label to calibrate a judge on)."""

    from_time: str | None = None
    to_time: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    max_items: int = 100
    output_as: str = "expected_output"


def check_build(spec: BuildSpec) -> None:
    errors: dict[str, str] = {}
    unknown = set(spec.filters) - FILTERS
    if unknown:
        errors["filters"] = f"Unknown filters: {', '.join(sorted(unknown))}."
    if not 1 <= spec.max_items <= MAX_BUILD_ITEMS:
        errors["max_items"] = f"Between 1 and {MAX_BUILD_ITEMS}."
    if spec.output_as not in ("expected_output", "metadata"):
        errors["output_as"] = "'expected_output' or 'metadata'."
    if spec.from_time and spec.to_time and spec.from_time >= spec.to_time:
        errors["to_time"] = "Must be after from_time."
    if errors:
        raise ValidationError(errors)


def trace_item_id(dataset: Dataset, trace_id: str) -> str:
    """The same trace always makes the same item of a dataset (Langfuse item ids are unique per project)."""
    return str(uuid.uuid5(ITEM_NAMESPACE, f"{dataset.pk}:{trace_id}"))


def trace_row(dataset: Dataset, trace: dict[str, Any], output_as: str) -> ItemRow | None:
    trace_id = str(trace.get("id") or "")
    if trace.get("input") is None or not trace_id or len(trace_id) > 100:
        return None
    metadata: dict[str, Any] = {"trace_name": trace.get("name"), "trace_timestamp": trace.get("timestamp")}
    expected = trace.get("output")
    if output_as == "metadata":
        metadata["output"], expected = trace.get("output"), None
    if item_problems(trace.get("input"), expected, metadata):
        return None
    return ItemRow(trace["input"], expected, metadata, trace_item_id(dataset, trace_id), trace_id)


def collect_traces(client: LangfuseClient, dataset: Dataset, spec: BuildSpec) -> tuple[list[ItemRow], WriteResult]:
    """Reads the traces (outside any transaction); `notes` say why it stopped early."""
    filters = spec.filters
    environment = filters.get("environment")
    traces = client.traces(from_time=spec.from_time, to_time=spec.to_time, name=filters.get("name"),
                           tags=filters.get("tags"), user_id=filters.get("user_id"),
                           environment=[environment] if isinstance(environment, str) else environment,
                           max_items=spec.max_items * SCAN_PER_ITEM)
    result, rows = WriteResult(), dict[str, ItemRow]()
    for trace in traces:
        result.considered += 1
        if not matches(trace, filters):
            continue
        row = trace_row(dataset, trace, spec.output_as)
        if row is None:
            result.skipped += 1  # no input, an unusable id, or too large
            continue
        rows[str(row.external_id)] = row  # a trace seen twice (pages shift while traces arrive) is one item
        if len(rows) >= spec.max_items:
            result.notes.append(f"stopped at the maximum of {spec.max_items} items")
            break
    else:
        if result.considered >= spec.max_items * SCAN_PER_ITEM:
            result.notes.append(f"stopped after reading {result.considered} traces")
    return list(rows.values()), result


def build_from_traces(*, actor: Actor, dataset: Dataset, spec: BuildSpec) -> WriteResult:
    conn = langfuse_connection(dataset.project)
    with conn.client() as client:
        rows, result = collect_traces(client, dataset, spec)
    with transaction.atomic():
        result.created, result.updated = upsert_items(dataset, rows,
                                                      ("input", "expected_output", "metadata", "source_trace_id"))
        audit.record(actor, "dataset.build", dataset, after={
            "status": "succeeded", "created": result.created, "updated": result.updated,
            "considered": result.considered, "skipped": result.skipped, "notes": result.notes, **asdict(spec)})
    return result


def dataset_build(*, actor: Actor, dataset: Dataset, spec: BuildSpec) -> WriteResult:
    """Items from the project's Langfuse traces: at once for small builds, else on a worker."""
    require_manager(actor, dataset)
    check_build(spec)
    langfuse_connection(dataset.project)
    if spec.max_items <= INLINE_ITEMS:
        return build_from_traces(actor=actor, dataset=dataset, spec=spec)
    from evals.tasks_datasets import build_dataset_from_traces

    audit.record(actor, "dataset.build", dataset, after={"status": "queued", **asdict(spec)})
    user_id = actor.user.pk if actor.user else None
    transaction.on_commit(lambda: build_dataset_from_traces.delay(dataset.pk, user_id, asdict(spec)))
    return WriteResult(queued=True)
