"""What every write of items shares: its result (`WriteResult`), the bulk upsert by external id under a
lock of the dataset, the team-manager check, the project's Langfuse connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils import timezone

from evals.models import Dataset, DatasetItem, LangfuseConnection
from evals.services.datasets.limits import MAX_DATASET_ITEMS
from evals.services.datasets.values import ItemRow
from portal.access import Actor
from portal.models import Project


@dataclass
class WriteResult:
    """What a bulk write did; each endpoint answers with the fields that concern it."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    considered: int = 0
    queued: bool = False
    langfuse_name: str = ""
    pushed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def upsert_items(dataset: Dataset, rows: list[ItemRow], fields: tuple[str, ...]) -> tuple[int, int]:
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
