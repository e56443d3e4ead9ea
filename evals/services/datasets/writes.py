"""Datasets and items one at a time (create, update, delete) and items imported from a JSONL or CSV
file, each audited."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from evals.models import Dataset, DatasetItem
from evals.services.datasets.files import parse_items
from evals.services.datasets.limits import MAX_DATASET_ITEMS
from evals.services.datasets.store import WriteResult, require_manager, upsert_items
from evals.services.datasets.values import check_item
from portal import audit
from portal.access import Actor
from portal.models import Project

DATASET_FIELDS = ("name", "description", "langfuse_name")


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
    created, updated = upsert_items(dataset, rows, ("input", "expected_output", "metadata"))
    audit.record(actor, "dataset.import", dataset, after={"format": fmt, "created": created, "updated": updated})
    return WriteResult(created=created, updated=updated)
