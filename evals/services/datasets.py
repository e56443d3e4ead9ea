"""Writes to datasets and their items: create, update and delete; imports of
JSONL and CSV files; items built from a project's Langfuse traces; pushes to
and pulls from Langfuse datasets.

Every item has a stable `external_id`, which is also its id in Langfuse, so
an import, a build, a push or a pull that runs again updates items instead of
adding them. Bulk writes check everything first and write in one
transaction: one bad line and nothing is imported. Builds and pushes of more
than `INLINE_ITEMS` items run on a worker; their outcome goes to the audit log."""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import Dataset, DatasetItem, LangfuseConnection
from evals.services.runs import matches
from portal import audit
from portal.access import Actor, system_actor
from portal.models import Project

log = logging.getLogger(__name__)
MAX_ITEM_CHARS = 100_000  # an item's input, expected output and metadata, as JSON
MAX_DATASET_ITEMS = 20_000
MAX_BUILD_ITEMS = 10_000
INLINE_ITEMS = 500  # builds and pushes up to this size answer in the request; larger ones run on a worker
SCAN_PER_ITEM = 20  # a build reads at most this many traces per item it may add (metadata filters are local)
MAX_ERRORS = 1000


def max_upload_bytes() -> int:
    """settings.EVALS_MAX_UPLOAD_BYTES: the largest file an import takes."""
    return int(settings.EVALS_MAX_UPLOAD_BYTES)


def max_upload_rows() -> int:
    """settings.EVALS_MAX_UPLOAD_ROWS: the most rows (lines, array elements) an import takes."""
    return int(settings.EVALS_MAX_UPLOAD_ROWS)


def too_large_message() -> str:
    limit = max_upload_bytes()
    size = f"{limit / (1024 * 1024):g} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return f"The file is larger than {size}, the limit of an upload; nothing was imported."


def check_upload_size(content: bytes) -> None:
    if len(content) > max_upload_bytes():
        raise ValidationError({"file": [too_large_message()]})


def check_row_count(rows: int, what: str) -> None:
    if rows > max_upload_rows():
        raise ValidationError({"file": [f"The file has more than {max_upload_rows()} {what}, the limit of an "
                                        "upload; nothing was imported."]})


def check_line_count(text: str, what: str) -> None:
    """Before parsing: a file of more non-blank lines than rows allowed is refused unparsed."""
    lines = text.count("\n") + 1
    if lines > max_upload_rows() and sum(1 for line in text.split("\n") if line.strip()) > max_upload_rows():
        check_row_count(max_upload_rows() + 1, what)
ITEM_NAMESPACE = uuid.UUID("0b8f6f4e-5d7c-4a43-9c2e-7e1d3a5b9f10")
IMPORT_FIELDS = frozenset({"input", "expected_output", "metadata", "id"})
DATASET_FIELDS = ("name", "description", "langfuse_name")
FILTERS = frozenset({"name", "tags", "user_id", "environment", "metadata"})


@dataclass
class ItemRow:
    """One item to write; without `external_id` it gets a new one."""

    input: Any
    expected_output: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    external_id: str | None = None
    source_trace_id: str = ""


@dataclass
class WriteResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    considered: int = 0
    queued: bool = False
    langfuse_name: str = ""
    pushed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


# Checks ----------------------------------------------------------------


def text_problem(value: Any) -> str | None:
    """What makes a JSON value unstorable in PostgreSQL (NUL characters, lone surrogates), if anything."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, str):
            if "\x00" in current:
                return "contains a NUL character"
            try:
                current.encode("utf-8")
            except UnicodeEncodeError:
                return "contains text that is not valid Unicode"
    return None


def item_problems(item_input: Any, expected_output: Any, metadata: Any) -> list[str]:
    problems = []
    if item_input is None:
        problems.append("input is missing")
    if not isinstance(metadata, dict):
        problems.append("metadata is not a JSON object")
    for name, value in (("input", item_input), ("expected_output", expected_output), ("metadata", metadata)):
        problem = text_problem(value)
        if problem:
            problems.append(f"{name} {problem}")
    if not problems and len(json.dumps([item_input, expected_output, metadata], default=str)) > MAX_ITEM_CHARS:
        problems.append(f"the item is larger than {MAX_ITEM_CHARS} characters as JSON")
    return problems


def id_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return "id is not a string"
    text = str(value).strip()
    if not text or len(text) > 100:
        return "id must have 1 to 100 characters"
    return text_problem(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[:exc.start].count(b"\n") + 1
        raise ValidationError({"file": [f"line {line}: the file is not UTF-8 text."]}) from None


# Parsing files ---------------------------------------------------------


Errors = list[tuple[int, str]]  # (line number, what is wrong there)


def parse_jsonl(text: str) -> tuple[list[tuple[int, dict[str, Any]]], Errors]:
    """(line number, object) per non-blank line, and what is wrong with the others."""
    records, errors = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            errors.append((number, f"not valid JSON ({getattr(exc, 'msg', None) or exc})"))
            continue
        if not isinstance(value, dict):
            errors.append((number, "not a JSON object"))
            continue
        records.append((number, value))
    return records, errors


def parse_csv(text: str, *, columns: frozenset[str], required: Iterable[str]
              ) -> tuple[list[tuple[int, dict[str, str]]], Errors]:
    """(line number, {column: text}) per data row of a CSV file with a header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, dict[str, str]]] = []
    errors: Errors = []
    header: list[str] | None = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append((start, str(exc)))
            break
        line, start = start, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [c.strip() for c in row]
            unknown = sorted(set(header) - columns)
            missing = [c for c in required if c not in header]
            if unknown or missing or len(set(header)) != len(header):
                return [], [(line, f"the header must name the columns {', '.join(sorted(columns))} "
                                   f"(required: {', '.join(required)}), each once; found {', '.join(header)[:300]}")]
            continue
        if len(row) != len(header):
            errors.append((line, f"{len(row)} fields, but the header has {len(header)}"))
            continue
        records.append((line, dict(zip(header, row, strict=True))))
    if header is None:
        errors.insert(0, (1, "the file is empty"))
    return records, errors


def rows_from_jsonl(records: list[tuple[int, dict[str, Any]]]) -> tuple[list[tuple[int, ItemRow]], Errors]:
    rows, errors = [], []
    for line, record in records:
        problems = [f"unknown field {k!r}" for k in sorted(set(record) - IMPORT_FIELDS)][:5]
        metadata = record.get("metadata")
        metadata = {} if metadata is None else metadata
        problems += item_problems(record.get("input"), record.get("expected_output"), metadata)
        external_id = None
        if record.get("id") is not None:
            problem = id_problem(record["id"])
            if problem:
                problems.append(problem)
            else:
                external_id = str(record["id"]).strip()
        if problems:
            errors.append((line, "; ".join(problems)))
            continue
        rows.append((line, ItemRow(record["input"], record.get("expected_output"), metadata, external_id)))
    return rows, errors


def rows_from_csv(records: list[tuple[int, dict[str, str]]]) -> tuple[list[tuple[int, ItemRow]], Errors]:
    """CSV cells are text: `input` and `expected_output` are taken as strings
    (an empty expected output is none); `metadata` is a JSON object."""
    rows, errors = [], []
    for line, record in records:
        problems = []
        metadata: Any = {}
        if (record.get("metadata") or "").strip():
            try:
                metadata = json.loads(record["metadata"], parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                metadata = None
        text_input = record.get("input") or None
        expected = record.get("expected_output") or None
        problems += item_problems(text_input, expected, metadata)
        external_id = (record.get("id") or "").strip() or None
        if external_id is not None and (problem := id_problem(external_id)):
            problems.append(problem)
        if problems:
            errors.append((line, "; ".join(problems)))
            continue
        rows.append((line, ItemRow(text_input, expected, metadata, external_id)))
    return rows, errors


def line_errors(errors: Errors) -> list[str]:
    """Every bad line, in file order (at most MAX_ERRORS of them)."""
    messages = [f"line {line}: {message}." for line, message in sorted(errors)]
    more = len(messages) - MAX_ERRORS
    return messages[:MAX_ERRORS] + ([f"... and {more} more bad lines."] if more > 0 else [])


def duplicate_ids(rows: list[tuple[int, str | None]], what: str = "id") -> Errors:
    first: dict[str, int] = {}
    errors = []
    for line, key in rows:
        if key is None:
            continue
        if key in first:
            errors.append((line, f"{what} {key!r} is already on line {first[key]}"))
        else:
            first[key] = line
    return errors


def parse_items(content: bytes, fmt: str) -> list[ItemRow]:
    """The items of an uploaded file, or a ValidationError naming every bad line."""
    check_upload_size(content)
    text = decode(content)
    if fmt != "csv":
        check_line_count(text, "items")
    if fmt == "csv":
        cells, errors = parse_csv(text, columns=IMPORT_FIELDS, required=["input"])
        count = len(cells)
        rows, row_errors = rows_from_csv(cells)
    else:
        objects, errors = parse_jsonl(text)
        count = len(objects)
        rows, row_errors = rows_from_jsonl(objects)
    check_row_count(count + len(errors), "items")
    errors += row_errors + duplicate_ids([(line, row.external_id) for line, row in rows])
    if errors:
        raise ValidationError({"file": line_errors(errors)})
    if not rows:
        raise ValidationError({"file": ["The file has no items."]})
    return [row for _, row in rows]


# Writing ---------------------------------------------------------------


def _upsert(dataset: Dataset, rows: list[ItemRow], fields: tuple[str, ...]) -> tuple[int, int]:
    """(created, updated). Call inside a transaction; rows have distinct ids."""
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()  # one bulk write per dataset at a time
    ids = [r.external_id for r in rows if r.external_id]
    existing = set(DatasetItem.objects.filter(dataset=dataset, external_id__in=ids)
                   .values_list("external_id", flat=True))
    new = len(rows) - len(existing)
    if new and DatasetItem.objects.filter(dataset=dataset).count() + new > MAX_DATASET_ITEMS:
        raise ValidationError({"dataset": f"A dataset holds at most {MAX_DATASET_ITEMS} items."})
    items = [DatasetItem(dataset=dataset, external_id=r.external_id or uuid.uuid4().hex, input=r.input,
                         expected_output=r.expected_output, metadata=r.metadata,
                         source_trace_id=r.source_trace_id) for r in rows]
    DatasetItem.objects.bulk_create(items, batch_size=500, update_conflicts=True,
                                    unique_fields=["dataset", "external_id"], update_fields=list(fields))
    Dataset.objects.filter(pk=dataset.pk).update(updated_at=timezone.now())
    return new, len(existing)


def require_manager(actor: Actor, dataset: Dataset) -> None:
    actor.require_team_manager(dataset.project.team_id)


def langfuse_connection(project: Project) -> LangfuseConnection:
    conn = LangfuseConnection.objects.filter(project=project, enabled=True).first()
    if conn is None:
        raise ValidationError({"langfuse": "The project has no enabled Langfuse connection; connect one first."})
    return conn


def langfuse_dataset(client: LangfuseClient, name: str) -> dict[str, Any] | None:
    return client.dataset(name)


# Datasets and items ----------------------------------------------------


@transaction.atomic
def dataset_create(*, actor: Actor, project: Project, data: dict[str, Any]) -> Dataset:
    actor.require_team_manager(project.team_id)
    if Dataset.objects.filter(project=project, name=data["name"]).exists():
        raise ValidationError({"name": "A dataset with this name already exists in the project."})
    dataset = Dataset.objects.create(project=project, name=data["name"], description=data.get("description", ""))
    audit.record(actor, "dataset.create", dataset, after=audit.snapshot(dataset, DATASET_FIELDS))
    return dataset


@transaction.atomic
def dataset_update(*, actor: Actor, dataset: Dataset, data: dict[str, Any]) -> Dataset:
    require_manager(actor, dataset)
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    before = audit.snapshot(dataset, DATASET_FIELDS)
    if "name" in data and Dataset.objects.filter(project_id=dataset.project_id, name=data["name"]).exclude(
            pk=dataset.pk).exists():
        raise ValidationError({"name": "A dataset with this name already exists in the project."})
    for name in ("name", "description"):
        if name in data:
            setattr(dataset, name, data[name])
    dataset.save()
    audit.record(actor, "dataset.update", dataset, before=before, after=audit.snapshot(dataset, DATASET_FIELDS))
    return dataset


@transaction.atomic
def dataset_delete(*, actor: Actor, dataset: Dataset) -> None:
    require_manager(actor, dataset)
    benchmarks = list(dataset.benchmarks.values_list("name", flat=True)[:5])
    if benchmarks:
        raise ValidationError({"dataset": f"Benchmarks use this dataset ({', '.join(benchmarks)}); "
                                          "delete them first."})
    audit.record(actor, "dataset.delete", dataset,
                 before={**audit.snapshot(dataset, DATASET_FIELDS), "items": dataset.items.count()})
    dataset.delete()


def check_item(data: dict[str, Any], item: DatasetItem | None = None) -> None:
    """The item's values as they would be saved: storable, and not too large."""
    values = {name: data.get(name, getattr(item, name, None)) for name in ("input", "expected_output", "metadata")}
    errors: dict[str, str] = {}
    for name, value in values.items():
        problem = text_problem(value)
        if problem:
            errors[name] = f"The value {problem}."
    if data.get("external_id") is not None and (problem := id_problem(data["external_id"])):
        errors["external_id"] = f"The {problem}."
    if not errors and len(json.dumps(list(values.values()), default=str)) > MAX_ITEM_CHARS:
        errors["input"] = f"The item is larger than {MAX_ITEM_CHARS} characters as JSON."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def item_create(*, actor: Actor, dataset: Dataset, data: dict[str, Any]) -> DatasetItem:
    require_manager(actor, dataset)
    check_item(data)
    external_id = str(data.get("external_id") or "").strip() or uuid.uuid4().hex
    if DatasetItem.objects.filter(dataset=dataset, external_id=external_id).exists():
        raise ValidationError({"external_id": "An item with this id already exists in the dataset."})
    if DatasetItem.objects.filter(dataset=dataset).count() >= MAX_DATASET_ITEMS:
        raise ValidationError({"dataset": f"A dataset holds at most {MAX_DATASET_ITEMS} items."})
    item = DatasetItem.objects.create(dataset=dataset, external_id=external_id, input=data["input"],
                                      expected_output=data.get("expected_output"),
                                      metadata=data.get("metadata") or {})
    audit.record(actor, "dataset.item_create", dataset, after={"item": item.external_id})
    return item


@transaction.atomic
def item_update(*, actor: Actor, item: DatasetItem, data: dict[str, Any]) -> DatasetItem:
    require_manager(actor, item.dataset)
    if "external_id" in data and data["external_id"] != item.external_id:
        raise ValidationError({"external_id": "An item's id cannot change (it is also its id in Langfuse)."})
    check_item(data, item)
    for name in ("input", "expected_output", "metadata"):
        if name in data:
            setattr(item, name, data[name])
    item.save()
    audit.record(actor, "dataset.item_update", item.dataset,
                 after={"item": item.external_id, "fields": sorted(set(data) - {"external_id"})})
    return item


@transaction.atomic
def item_delete(*, actor: Actor, item: DatasetItem) -> None:
    require_manager(actor, item.dataset)
    audit.record(actor, "dataset.item_delete", item.dataset, before={"item": item.external_id})
    item.delete()


# Imports ---------------------------------------------------------------


@transaction.atomic
def dataset_import(*, actor: Actor, dataset: Dataset, content: bytes, fmt: str) -> WriteResult:
    """Items from a JSONL or CSV file; items whose `id` is already in the dataset are updated."""
    require_manager(actor, dataset)
    rows = parse_items(content, fmt)
    created, updated = _upsert(dataset, rows, ("input", "expected_output", "metadata"))
    audit.record(actor, "dataset.import", dataset, after={"format": fmt, "created": created, "updated": updated})
    return WriteResult(created=created, updated=updated)


# Building from traces --------------------------------------------------


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
        result.created, result.updated = _upsert(dataset, rows,
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


def background_actor(dataset: Dataset, user_id: int | None, what: str) -> Actor:
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return system_actor(dataset.project.organization, f"{what} (background)", user=user)


def build_in_background(*, dataset_id: int, user_id: int | None, spec: dict[str, Any]) -> None:
    dataset = Dataset.objects.select_related("project__organization").filter(pk=dataset_id).first()
    if dataset is None:
        return
    actor = background_actor(dataset, user_id, "dataset build")
    try:
        build_from_traces(actor=actor, dataset=dataset, spec=BuildSpec(**spec))
    except (ValidationError, LangfuseError) as exc:
        log.warning("build of dataset %s failed: %s", dataset_id, exc)
        audit.record(actor, "dataset.build", dataset, after={"status": "failed", "error": error_text(exc)})


def error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)[:500]
    return str(exc)[:500]


# Langfuse: push and pull -----------------------------------------------


def push_items(*, actor: Actor, dataset: Dataset, name: str) -> WriteResult:
    """Create the Langfuse dataset if missing and upsert every item with its
    `external_id` as id. An item Langfuse refuses is reported and the push goes
    on; Langfuse down (after the client's retries) or refusing the keys stops it."""
    conn = langfuse_connection(dataset.project)
    result = WriteResult(langfuse_name=name)
    with conn.client() as client:
        if langfuse_dataset(client, name) is None:
            client.create_dataset(name, dataset.description, {"portal_dataset_id": dataset.pk})
        for item in dataset.items.order_by("id").iterator(chunk_size=500):
            try:
                client.upsert_dataset_item({
                    "datasetName": name, "id": item.external_id, "input": item.input,
                    "expectedOutput": item.expected_output, "metadata": item.metadata,
                    "sourceTraceId": item.source_trace_id or None})
            except LangfuseError as exc:
                if not exc.permanent or exc.status in (401, 403):
                    raise
                result.failed.append({"id": item.external_id, "error": str(exc)[:300]})
            else:
                result.pushed += 1
    with transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).update(langfuse_name=name)
        dataset.langfuse_name = name
        audit.record(actor, "dataset.push", dataset, after={"status": "succeeded", "langfuse_name": name,
                                                            "pushed": result.pushed, "failed": len(result.failed)})
    return result


def dataset_push(*, actor: Actor, dataset: Dataset, name: str | None = None) -> WriteResult:
    """To the Langfuse dataset `name` (default: the one it was pushed to or pulled from, else its own name)."""
    require_manager(actor, dataset)
    langfuse_connection(dataset.project)
    name = name or dataset.langfuse_name or dataset.name
    if dataset.items.count() <= INLINE_ITEMS:
        return push_items(actor=actor, dataset=dataset, name=name)
    from evals.tasks_datasets import push_dataset

    audit.record(actor, "dataset.push", dataset, after={"status": "queued", "langfuse_name": name})
    user_id = actor.user.pk if actor.user else None
    transaction.on_commit(lambda: push_dataset.delay(dataset.pk, user_id, name))
    return WriteResult(queued=True, langfuse_name=name)


def push_in_background(*, dataset_id: int, user_id: int | None, name: str) -> None:
    dataset = Dataset.objects.select_related("project__organization").filter(pk=dataset_id).first()
    if dataset is None:
        return
    actor = background_actor(dataset, user_id, "dataset push")
    try:
        push_items(actor=actor, dataset=dataset, name=name)
    except (ValidationError, LangfuseError) as exc:
        log.warning("push of dataset %s failed: %s", dataset_id, exc)
        audit.record(actor, "dataset.push", dataset, after={"status": "failed", "langfuse_name": name,
                                                            "error": error_text(exc)})


def langfuse_row(raw: dict[str, Any]) -> tuple[ItemRow | None, str | None]:
    item_id = raw.get("id")
    problem = id_problem(item_id)
    if problem:
        return None, f"item {str(item_id)[:120]!r}: {problem}"
    metadata = raw.get("metadata")
    metadata = {} if metadata is None else metadata if isinstance(metadata, dict) else {"langfuse": metadata}
    if raw.get("input") is None:
        return None, None  # the portal needs an input: skipped
    problems = item_problems(raw.get("input"), raw.get("expectedOutput"), metadata)
    if problems:
        return None, f"item {item_id!r}: {'; '.join(problems)}"
    trace_id = str(raw.get("sourceTraceId") or "")[:100]
    return ItemRow(raw["input"], raw.get("expectedOutput"), metadata, str(item_id), trace_id), None


def dataset_pull(*, actor: Actor, dataset: Dataset, name: str | None = None) -> WriteResult:
    """Items of a Langfuse dataset, by id: new ones added, known ones updated.
    Archived items and items without input are skipped. The dataset is linked
    to that Langfuse dataset (`langfuse_name`) from then on."""
    require_manager(actor, dataset)
    name = name or dataset.langfuse_name or dataset.name
    conn = langfuse_connection(dataset.project)
    rows: dict[str, ItemRow] = {}
    errors: list[str] = []
    result = WriteResult(langfuse_name=name)
    with conn.client() as client:
        if langfuse_dataset(client, name) is None:
            raise ValidationError({"name": f"Langfuse has no dataset named {name!r}."})
        # Every item read counts (repeated, archived, invalid): the host is the tenant's choice, and
        # one that lists the same item for ever must not keep the request reading.
        for read, raw in enumerate(client.dataset_items(name)):
            if read >= MAX_DATASET_ITEMS:
                raise ValidationError({"name": f"The Langfuse dataset has more than {MAX_DATASET_ITEMS} items."})
            if len(errors) >= MAX_ERRORS:
                continue  # enough to report; reading on only to the limit
            if not isinstance(raw, dict):
                errors.append(f"item {read + 1}: not a JSON object")
                continue
            if raw.get("status") == "ARCHIVED":
                result.skipped += 1
                continue
            row, problem = langfuse_row(raw)
            if problem:
                errors.append(problem)
            elif row is None:
                result.skipped += 1
            else:
                rows[str(row.external_id)] = row  # pages may overlap while items change
    if errors:
        raise ValidationError({"name": errors[:MAX_ERRORS]})
    with transaction.atomic():
        result.created, result.updated = _upsert(dataset, list(rows.values()),
                                                 ("input", "expected_output", "metadata", "source_trace_id"))
        Dataset.objects.filter(pk=dataset.pk).update(langfuse_name=name)
        dataset.langfuse_name = name
        audit.record(actor, "dataset.pull", dataset, after={"langfuse_name": name, "created": result.created,
                                                            "updated": result.updated, "skipped": result.skipped})
    return result

