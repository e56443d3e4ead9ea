"""Datasets: create, upload JSONL/CSV (every bad row named, nothing imported), build from traces."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from evals.api.datasets.serializers import BuildRequestSerializer, DatasetSerializer
from evals.langfuse_client import LangfuseError
from evals.models import Dataset, DatasetItem
from evals.services import datasets as services
from evals.services.datasets import BuildSpec
from evals.services.datasets.limits import max_upload_bytes, too_large_message
from portal.tenancy import Parent
from portal.web.base import PROJECT
from portal.web.evaluations.common import ProjectPage, drf_errors, errors_of, optional

DATASET = Parent(Dataset, "dataset_id", within="project")


class DatasetsPage(ProjectPage):
    """The project's datasets and the form that creates one."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(form={}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        serializer = DatasetSerializer(data=optional(request.POST, "name", "description"),
                                       context=self.parent_context())
        try:
            if not serializer.is_valid():
                raise ValidationError(drf_errors(serializer.errors))
            dataset = services.dataset_create(actor=self.actor, project=self.project, data=serializer.validated_data)
        except (ValidationError, PermissionDenied) as exc:
            return self.listing(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Dataset '{dataset.name}' created: upload its items.")
        return redirect("web:dataset", org_slug=self.organization.slug, project_id=self.project.pk,
                        dataset_id=dataset.pk)

    def listing(self, *, form: dict[str, Any], errors: dict[str, list[str]]) -> HttpResponse:
        rows = (Dataset.objects.visible_to(self.actor, "view").filter(project=self.project)
                .annotate(item_count=Count("items")).order_by("name"))
        return self.page("web/evaluations/datasets.html", http_status=400 if errors else 200, datasets=rows,
                         form=form, errors=errors)


def read_file(request: HttpRequest) -> tuple[bytes, str]:
    """The uploaded file (at most the upload limit, read no further) and its format."""
    upload = request.FILES.get("file")
    if upload is None:
        raise ValidationError({"file": ["Choose a JSONL or CSV file."]})
    if upload.size is not None and upload.size > max_upload_bytes():
        raise ValidationError({"file": [too_large_message()]})
    content = upload.read(max_upload_bytes() + 1)
    fmt = request.POST.get("format", "")
    if fmt not in ("jsonl", "csv"):
        fmt = "csv" if (upload.name or "").lower().endswith(".csv") else "jsonl"
    return content, fmt


class DatasetPage(ProjectPage):
    """A dataset's items, the upload form and the build-from-traces form."""

    parents = (PROJECT, DATASET)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.detail(errors={}, build_form={"max_items": 100, "output_as": "expected_output"})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        dataset = self.parent(Dataset)
        action = request.POST.get("action", "upload")
        try:
            if action == "build":
                result = self.build(dataset)
                messages.success(request, (f"Building on a worker from up to {result.considered or 'the'} traces."
                                           if result.queued else
                                           f"{result.created} items added and {result.updated} updated from "
                                           f"{result.considered} traces ({result.skipped} skipped)."))
                for note in result.notes:
                    messages.info(request, note)
            else:
                self.actor.require_team_manager(self.project.team_id)
                content, fmt = read_file(request)
                result = services.dataset_import(actor=self.actor, dataset=dataset, content=content, fmt=fmt)
                messages.success(request, f"Imported: {result.created} items added, {result.updated} updated.")
        except (ValidationError, PermissionDenied) as exc:
            return self.detail(errors=errors_of(exc), action=action, build_form=request.POST.dict())
        except LangfuseError as exc:
            return self.detail(errors={"langfuse": [f"Langfuse: {str(exc)[:300]} Nothing was changed; try again."]},
                               action=action, build_form=request.POST.dict())
        return redirect("web:dataset", org_slug=self.organization.slug, project_id=self.project.pk,
                        dataset_id=dataset.pk)

    def build(self, dataset: Dataset) -> Any:
        post = self.request.POST
        filters: dict[str, Any] = optional(post, "name", "user_id")
        for field in ("tags", "environment"):
            values = [v.strip() for v in post.get(field, "").split(",") if v.strip()]
            if values:
                filters[field] = values
        body = BuildRequestSerializer(data={**optional(post, "from_time", "to_time", "max_items", "output_as"),
                                            "filters": filters})
        if not body.is_valid():
            raise ValidationError(drf_errors(body.errors))
        data = body.validated_data
        spec = BuildSpec(from_time=data["from_time"].isoformat() if data.get("from_time") else None,
                         to_time=data["to_time"].isoformat() if data.get("to_time") else None,
                         filters=dict(data.get("filters") or {}), max_items=data["max_items"],
                         output_as=data["output_as"])
        return services.dataset_build(actor=self.actor, dataset=dataset, spec=spec)

    def detail(self, *, errors: dict[str, list[str]], build_form: dict[str, Any], action: str = "") -> HttpResponse:
        dataset = self.parent(Dataset)
        items = DatasetItem.objects.visible_to(self.actor, "view").filter(dataset=dataset).order_by("pk")
        return self.page("web/evaluations/dataset.html", http_status=400 if errors else 200, dataset=dataset,
                         page=Paginator(items, 50).get_page(self.request.GET.get("page")), errors=errors,
                         action=action, build_form=build_form, connected=self.connection() is not None)
