"""Datasets of a project and their items, under `/api/v1/orgs/{org_slug}/projects/{project_id}/datasets/`.

Everyone in the organization reads; the team's admins and org admins write."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from evals.api.datasets.errors import langfuse_errors
from evals.api.datasets.serializers import (
    BuildRequestSerializer,
    BuildResultSerializer,
    DatasetItemSerializer,
    DatasetSerializer,
    ImportResultSerializer,
    LangfuseNameSerializer,
    PullResultSerializer,
    PushResultSerializer,
    result_data,
)
from evals.api.datasets.uploads import ITEM_UPLOAD, CSVUpload, JSONLUpload, NDJSONUpload, read_upload
from evals.api.views import ProjectScopedViewSet
from evals.models import Dataset, DatasetItem
from evals.services import datasets
from evals.services.datasets import BuildSpec
from portal.models import Project
from portal.tenancy import Parent


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Datasets of the project: examples with input, expected output and metadata."""

    queryset = Dataset.objects.annotate(item_count=Count("items")).order_by("name")
    serializer_class = DatasetSerializer
    filterset_fields = ["name"]

    def fresh(self, dataset: Dataset) -> Dataset:
        return self.get_queryset().get(pk=dataset.pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dataset = datasets.dataset_create(actor=self.actor, project=self.project(), data=serializer.validated_data)
        return Response(self.get_serializer(self.fresh(dataset)).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dataset = self.get_object()
        serializer = self.get_serializer(dataset, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        dataset = datasets.dataset_update(actor=self.actor, dataset=dataset, data=serializer.validated_data)
        return Response(self.get_serializer(self.fresh(dataset)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        datasets.dataset_delete(actor=self.actor, dataset=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=ITEM_UPLOAD, responses=ImportResultSerializer)
    @action(detail=True, methods=["post"], url_path="import",
            parser_classes=[NDJSONUpload, JSONLUpload, CSVUpload, MultiPartParser])
    def import_items(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Import a JSONL or CSV file. JSONL lines: `{"input": ..., "expected_output": ..., "metadata": {...},
        "id": "..."}`; CSV columns: input, expected_output, metadata (JSON), id. Items whose id is in the
        dataset are updated. One bad line and nothing is imported: the 400 names every bad line."""
        dataset = self.get_object()
        self.actor.require_team_manager(self.project().team_id)
        content, fmt = read_upload(request, {"jsonl", "csv"})
        result = datasets.dataset_import(actor=self.actor, dataset=dataset, content=content, fmt=fmt)
        return Response(ImportResultSerializer(result_data(result, "created", "updated")).data)

    @extend_schema(request=BuildRequestSerializer, responses={200: BuildResultSerializer, 202: BuildResultSerializer})
    @action(detail=True, methods=["post"], url_path="build-from-traces")
    def build_from_traces(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Add the project's Langfuse traces as items (the trace id is kept as source_trace_id; building again
        updates those items)."""
        dataset = self.get_object()
        body = BuildRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        filters = {k: v for k, v in (data.get("filters") or {}).items() if v not in (None, "", [], {})}
        spec = BuildSpec(from_time=data["from_time"].isoformat() if data.get("from_time") else None,
                         to_time=data["to_time"].isoformat() if data.get("to_time") else None,
                         filters=filters, max_items=data["max_items"], output_as=data["output_as"])
        with langfuse_errors():
            result = datasets.dataset_build(actor=self.actor, dataset=dataset, spec=spec)
        body_out = BuildResultSerializer(result_data(result, "queued", "created", "updated", "considered",
                                                     "skipped", "notes")).data
        return Response(body_out, status=status.HTTP_202_ACCEPTED if result.queued else status.HTTP_200_OK)

    @extend_schema(request=LangfuseNameSerializer, responses={200: PushResultSerializer, 202: PushResultSerializer})
    @action(detail=True, methods=["post"])
    def push(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Push the items to a Langfuse dataset (created if missing), each with its external_id as id."""
        dataset = self.get_object()
        body = LangfuseNameSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with langfuse_errors():
            result = datasets.dataset_push(actor=self.actor, dataset=dataset, name=body.validated_data.get("name"))
        body_out = PushResultSerializer(result_data(result, "queued", "langfuse_name", "pushed", "failed")).data
        return Response(body_out, status=status.HTTP_202_ACCEPTED if result.queued else status.HTTP_200_OK)

    @extend_schema(request=LangfuseNameSerializer, responses=PullResultSerializer)
    @action(detail=True, methods=["post"])
    def pull(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Import a Langfuse dataset's items by id: new ones are added, known ones updated."""
        dataset = self.get_object()
        body = LangfuseNameSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with langfuse_errors():
            result = datasets.dataset_pull(actor=self.actor, dataset=dataset, name=body.validated_data.get("name"))
        return Response(PullResultSerializer(result_data(result, "langfuse_name", "created", "updated",
                                                         "skipped")).data)


class DatasetItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Items of one dataset."""

    queryset = DatasetItem.objects.select_related("dataset__project")
    parents = (Parent(Project, "project_id"),
               Parent(Dataset, "dataset_id", within="project", rows="dataset", select_related=("project",)))
    serializer_class = DatasetItemSerializer
    filterset_fields = ["external_id", "source_trace_id"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = datasets.item_create(actor=self.actor, dataset=self.parent(Dataset), data=serializer.validated_data)
        return Response(self.get_serializer(item).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        item = self.get_object()
        serializer = self.get_serializer(item, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        item = datasets.item_update(actor=self.actor, item=item, data=serializer.validated_data)
        return Response(self.get_serializer(item).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        datasets.item_delete(actor=self.actor, item=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
