"""Builds and pushes too large for a request, run by the tasks of evals.tasks_datasets. They act for the
user who asked (a system actor of the organization); a failure is audited, not raised."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from evals.langfuse_client import LangfuseError
from evals.models import Dataset
from evals.services.datasets.sync import push_items
from evals.services.datasets.traces import BuildSpec, build_from_traces
from portal import audit
from portal.access import Actor, system_actor

log = logging.getLogger(__name__)


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
