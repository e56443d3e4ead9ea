"""Pushes to and pulls from Langfuse datasets. An item's `external_id` is its id in Langfuse, so both
directions update instead of adding. Pushes of more than INLINE_ITEMS items run on a worker
(`background.push_in_background`)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import Dataset
from evals.services.datasets.limits import INLINE_ITEMS, MAX_DATASET_ITEMS, MAX_ERRORS
from evals.services.datasets.store import WriteResult, langfuse_connection, require_manager, upsert_items
from evals.services.datasets.values import ItemRow, id_problem, item_problems
from portal import audit
from portal.access import Actor


def langfuse_dataset(client: LangfuseClient, name: str) -> dict[str, Any] | None:
    return client.dataset(name)


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


def read_langfuse_items(client: LangfuseClient, name: str, result: WriteResult) -> list[ItemRow]:
    """The rows of the Langfuse dataset's items, or a ValidationError naming the bad ones; archived
    items and items without input are counted in `result.skipped`."""
    rows: dict[str, ItemRow] = {}
    errors: list[str] = []
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
    return list(rows.values())


def dataset_pull(*, actor: Actor, dataset: Dataset, name: str | None = None) -> WriteResult:
    """Items of a Langfuse dataset, by id: new ones added, known ones updated.
    Archived items and items without input are skipped. The dataset is linked
    to that Langfuse dataset (`langfuse_name`) from then on."""
    require_manager(actor, dataset)
    name = name or dataset.langfuse_name or dataset.name
    conn = langfuse_connection(dataset.project)
    result = WriteResult(langfuse_name=name)
    with conn.client() as client:
        if langfuse_dataset(client, name) is None:
            raise ValidationError({"name": f"Langfuse has no dataset named {name!r}."})
        rows = read_langfuse_items(client, name, result)
    with transaction.atomic():
        result.created, result.updated = upsert_items(dataset, rows,
                                                      ("input", "expected_output", "metadata", "source_trace_id"))
        Dataset.objects.filter(pk=dataset.pk).update(langfuse_name=name)
        dataset.langfuse_name = name
        audit.record(actor, "dataset.pull", dataset, after={"langfuse_name": name, "created": result.created,
                                                            "updated": result.updated, "skipped": result.skipped})
    return result
