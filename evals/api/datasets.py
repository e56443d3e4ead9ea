"""Datasets, their items, human labels and judge calibrations, under
`/api/v1/orgs/{org_slug}/projects/{project_id}/`.

Everyone in the organization reads; the team's admins and org admins write.
Files are uploaded as the raw request body (`application/x-ndjson`,
`application/jsonl`, `text/csv`; labels also `application/json`) or as the
multipart field `file`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from evals.api.views import ProjectScopedViewSet
from evals.langfuse_client import LangfuseError
from evals.models import Dataset, DatasetItem, EvalRun, EvalScore, Evaluator, HumanLabel
from evals.services import calibration, datasets
from evals.services.datasets import MAX_BUILD_ITEMS, BuildSpec, WriteResult, max_upload_bytes, too_large_message
from portal.api.filters import query_int

RAW_TYPES = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "text/csv": "csv",
             "application/json": "json"}
EXTENSIONS = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "csv": "csv"}
MULTIPART_SLACK = 64 * 1024  # multipart framing around the file


# Uploads ---------------------------------------------------------------


class FileTooLarge(exceptions.APIException):
    """413, with the limit (settings.EVALS_MAX_UPLOAD_BYTES) in the message."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is too large."
    default_code = "too_large"

    def __init__(self) -> None:
        super().__init__(too_large_message())


class LangfuseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Langfuse did not answer; nothing was changed in the portal. Try again."
    default_code = "langfuse_unavailable"


class RawUpload(BaseParser):
    """A file sent as the request body, as bytes, up to the import limit."""

    def parse(self, stream: Any, media_type: str | None = None,  # type: ignore[override]
              parser_context: Any = None) -> bytes:
        data = stream.read(max_upload_bytes() + 1) if stream is not None else b""
        if len(data) > max_upload_bytes():
            raise FileTooLarge()
        return bytes(data)


class NDJSONUpload(RawUpload):
    media_type = "application/x-ndjson"


class JSONLUpload(RawUpload):
    media_type = "application/jsonl"


class CSVUpload(RawUpload):
    media_type = "text/csv"


class JSONUpload(RawUpload):
    media_type = "application/json"


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file; its name's extension (.jsonl, .ndjson, .json, .csv) "
                                           "tells the format.")


ITEM_UPLOAD = {"application/x-ndjson": OpenApiTypes.BINARY, "application/jsonl": OpenApiTypes.BINARY,
               "text/csv": OpenApiTypes.BINARY, "multipart/form-data": UploadSerializer}
LABEL_UPLOAD = {**ITEM_UPLOAD, "application/json": OpenApiTypes.BINARY}


def read_upload(request: Request, allowed: set[str]) -> tuple[bytes, str]:
    """(content, format) of an uploaded file."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_upload_bytes() + MULTIPART_SLACK:
        raise FileTooLarge()
    data = request.data
    if isinstance(data, bytes):
        fmt = RAW_TYPES.get(request.content_type.split(";")[0].strip().lower(), "")
        if fmt not in allowed:
            raise exceptions.UnsupportedMediaType(request.content_type)
        return data, fmt
    upload = request.FILES.get("file") if hasattr(data, "getlist") else None
    if not isinstance(upload, UploadedFile):
        raise exceptions.ValidationError({"file": [
            "Send the file as the request body (Content-Type " + ", ".join(
                t for t, f in RAW_TYPES.items() if f in allowed) + ") or as the multipart field 'file'."]})
    if (upload.size or 0) > max_upload_bytes():
        raise FileTooLarge()
    extension = (upload.name or "").rsplit(".", 1)[-1].lower() if "." in (upload.name or "") else ""
    fmt = EXTENSIONS.get(extension) or RAW_TYPES.get((upload.content_type or "").split(";")[0].lower(), "")
    if fmt not in allowed:
        raise exceptions.ValidationError({"file": ["Name the file .jsonl or .csv (or send its content type)."]})
    return upload.read(), fmt


@contextmanager
def langfuse_errors() -> Iterator[None]:
    """Langfuse refusing (keys, a bad request) is a 400; Langfuse down after the client's retries, a 503."""
    try:
        yield
    except LangfuseError as exc:
        if exc.permanent:
            raise exceptions.ValidationError({"langfuse": [str(exc)[:500]]}) from None
        raise LangfuseUnavailable(f"{str(exc)[:300]} Nothing was changed in the portal; try again.") from None


# Serializers -----------------------------------------------------------


class DatasetSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    item_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "langfuse_name", "item_count", "created_at", "updated_at"]
        read_only_fields = ["id", "langfuse_name", "item_count", "created_at", "updated_at"]
        validators: list[Any] = []


class DatasetItemSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(max_length=100, required=False,
                                        help_text="Stable id, also the item's id in Langfuse. Generated if not given; "
                                                  "cannot change.")
    input = serializers.JSONField()
    expected_output = serializers.JSONField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, help_text="A JSON object. For judge calibration, "
                                                              "`output` is the answer the judge sees.")

    class Meta:
        model = DatasetItem
        fields = ["id", "external_id", "input", "expected_output", "metadata", "source_trace_id", "created_at"]
        read_only_fields = ["id", "source_trace_id", "created_at"]
        validators: list[Any] = []


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class TraceFiltersSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=20)
    user_id = serializers.CharField(max_length=200, required=False)
    environment = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=20)
    metadata = serializers.DictField(child=serializers.CharField(max_length=500), required=False,
                                     help_text="Metadata keys and values a trace must have (all of them).")

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError(f"Unknown filters: {', '.join(map(str, unknown))[:200]}.")
        return super().to_internal_value(data)


class BuildRequestSerializer(serializers.Serializer):
    from_time = serializers.DateTimeField(required=False, help_text="Traces from (default: the earliest).")
    to_time = serializers.DateTimeField(required=False, help_text="Traces before (default: now).")
    filters = TraceFiltersSerializer(required=False)
    max_items = serializers.IntegerField(min_value=1, max_value=MAX_BUILD_ITEMS, default=100,
                                         help_text=f"Up to {datasets.INLINE_ITEMS} are added at once; more on a "
                                                   "worker (the answer is 202).")
    output_as = serializers.ChoiceField(
        choices=[("expected_output", "The trace's output becomes the expected output"),
                 ("metadata", "The trace's output goes to metadata.output (to label the items yourself)")],
        default="expected_output")


class BuildResultSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    considered = serializers.IntegerField(help_text="Traces read.")
    skipped = serializers.IntegerField(help_text="Matching traces without input, or too large.")
    notes = serializers.ListField(child=serializers.CharField())


class LangfuseNameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False,
                                 help_text="The Langfuse dataset (default: the linked one, else the dataset's name).")


class PushFailureSerializer(serializers.Serializer):
    id = serializers.CharField()
    error = serializers.CharField()


class PushResultSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    langfuse_name = serializers.CharField()
    pushed = serializers.IntegerField()
    failed = PushFailureSerializer(many=True, help_text="Items Langfuse refused (the others were pushed).")


class PullResultSerializer(serializers.Serializer):
    langfuse_name = serializers.CharField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Archived items and items without input.")


class HumanLabelSerializer(serializers.ModelSerializer):
    trace_id = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    item = serializers.PrimaryKeyRelatedField(source="dataset_item", queryset=DatasetItem.objects.none(),
                                              required=False, allow_null=True,
                                              help_text="A dataset item of this project (instead of a trace).")
    label = serializers.CharField(max_length=100,  # type: ignore[assignment]
                                  help_text="A number in the score's range, true/false, or one of the evaluator's "
                                            "labels.")

    class Meta:
        model = HumanLabel
        fields = ["id", "trace_id", "item", "label", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        project = self.context.get("project")
        if project is not None:
            fields["item"].queryset = DatasetItem.objects.filter(dataset__project=project)  # type: ignore[attr-defined]
        return fields


class BaselineSerializer(serializers.Serializer):
    label = serializers.CharField(allow_null=True,  # type: ignore[assignment]
                                  help_text="The most common expected label.")
    accuracy = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True)


class DisagreementSerializer(serializers.Serializer):
    subject = serializers.CharField(help_text="A trace id, or item:<item id>.")
    expected = serializers.CharField()
    judged = serializers.CharField()
    comment = serializers.CharField()


class AgreementSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Labels with a judgement.")
    labels = serializers.ListField(child=serializers.CharField())
    accuracy = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null when undefined (chance "
                                                              "agreement is 1: everything is one same label).")
    baseline = BaselineSerializer(help_text="Always answering the most common expected label.")
    confusion_matrix = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()),
                                             help_text="Rows: expected label; columns: the judge's, in `labels` order.")
    unscored = serializers.IntegerField(help_text="Labels without a usable judgement.")
    versions = serializers.DictField(child=serializers.IntegerField(),
                                     help_text="Judgements used, per evaluator version.")
    disagreements = DisagreementSerializer(many=True)


class CalibrationRequestSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.none(),
                                                 help_text="Each item's expected_output is its expected label.")
    concurrency = serializers.IntegerField(min_value=1, max_value=16, default=4, help_text="Judge calls at once.")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        project = self.context.get("project")
        if project is not None:
            fields["dataset"].queryset = Dataset.objects.filter(project=project)  # type: ignore[attr-defined]
        return fields


class CalibrationSerializer(serializers.ModelSerializer):
    """A calibration run: the evaluator's current version judging a dataset's labelled items."""

    dataset = serializers.SerializerMethodField()
    evaluator_version = serializers.IntegerField(source="evaluator_version.version", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = EvalRun
        fields = ["id", "dataset", "evaluator_version", "status", "total", "processed", "scored", "failed",
                  "progress", "judge_cost", "distribution", "stop_reason", "error", "duration_ms", "created_at",
                  "started_at", "finished_at"]
        read_only_fields = fields

    def get_dataset(self, obj: EvalRun) -> int | None:
        return calibration.calibration_dataset_id(getattr(obj, "subject", None))

    def get_progress(self, obj: EvalRun) -> float | None:
        if obj.status in ("succeeded", "partial", "failed"):
            return 1.0
        return round(obj.processed / obj.total, 3) if obj.total else None


class CalibrationDetailSerializer(CalibrationSerializer):
    report = serializers.SerializerMethodField()

    class Meta(CalibrationSerializer.Meta):
        fields = [*CalibrationSerializer.Meta.fields, "report"]
        read_only_fields = fields

    @extend_schema_field(AgreementSerializer)
    def get_report(self, obj: EvalRun) -> dict[str, Any]:
        return calibration.calibration_report(obj)


def result_data(result: WriteResult, *fields: str) -> dict[str, Any]:
    return {name: getattr(result, name) for name in fields}


# Viewsets --------------------------------------------------------------


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
    org_field = "dataset__project__organization"
    serializer_class = DatasetItemSerializer
    filterset_fields = ["external_id", "source_trace_id"]

    def dataset(self) -> Dataset:
        if not hasattr(self, "_dataset"):
            self._dataset = get_object_or_404(Dataset.objects.select_related("project"), project=self.project(),
                                              pk=self.kwargs["dataset_id"])
        return self._dataset

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(dataset=self.dataset())

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = datasets.item_create(actor=self.actor, dataset=self.dataset(), data=serializer.validated_data)
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


class EvaluatorScopedViewSet(ProjectScopedViewSet):
    """A resource of one evaluator of the project (404 when it is not the project's)."""

    def evaluator(self) -> Evaluator:
        if not hasattr(self, "_evaluator"):
            self._evaluator = get_object_or_404(Evaluator.objects.select_related("project"), project=self.project(),
                                                pk=self.kwargs["evaluator_id"])
        return self._evaluator

    def get_serializer_context(self) -> dict[str, Any]:
        return super().get_serializer_context() | ({"project": self.project()} if hasattr(self, "actor") else {})


class HumanLabelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EvaluatorScopedViewSet):
    """People's labels of traces or dataset items, to calibrate the evaluator's judge against."""

    queryset = HumanLabel.objects.order_by("id")
    serializer_class = HumanLabelSerializer
    filterset_fields = ["trace_id", "dataset_item", "label"]

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return super().narrow_queryset(queryset).filter(evaluator=self.evaluator())

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Label a trace or an item; labelling it again replaces its label."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        label, created = calibration.label_save(actor=self.actor, evaluator=self.evaluator(),
                                                trace_id=data.get("trace_id", ""), item=data.get("dataset_item"),
                                                label=data["label"])
        return Response(self.get_serializer(label).data, status=status.HTTP_201_CREATED if created else 200)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        calibration.label_delete(actor=self.actor, label=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=LABEL_UPLOAD, responses=ImportResultSerializer)
    @action(detail=False, methods=["post"], url_path="import",
            parser_classes=[NDJSONUpload, JSONLUpload, CSVUpload, JSONUpload, MultiPartParser])
    def import_labels(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Import labels: CSV with columns trace_id or item_id, and label; or JSON (an array, or one object a
        line) of `{"trace_id": ..., "label": ...}` / `{"item_id": ..., "label": ...}`. One bad row and nothing
        is imported."""
        evaluator = self.evaluator()
        self.actor.require_team_manager(self.project().team_id)
        content, fmt = read_upload(request, {"jsonl", "json", "csv"})
        created, updated = calibration.labels_import(actor=self.actor, evaluator=evaluator, content=content,
                                                     fmt=fmt)
        return Response(ImportResultSerializer({"created": created, "updated": updated}).data)

    @extend_schema(parameters=[OpenApiParameter("version", int, description="Only this evaluator version's "
                                                                            "judgements (default: the latest "
                                                                            "of any version).")],
                   responses=AgreementSerializer)
    @action(detail=False, methods=["get"])
    def report(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The judge's agreement with these labels: accuracy and Cohen's kappa, next to always answering the
        most common label, with the confusion matrix."""
        version = query_int(request.query_params, "version", "A version number.")
        result = calibration.labels_report(evaluator=self.evaluator(), version=version)
        return Response(AgreementSerializer(result).data)


FIRST_SUBJECT = Subquery(EvalScore.objects.filter(run=OuterRef("pk")).order_by("id").values("trace_id")[:1])


class CalibrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EvaluatorScopedViewSet):
    """Calibrations of the evaluator's judge on datasets whose expected outputs are the expected labels."""

    queryset = (EvalRun.objects.select_related("evaluator_version").annotate(subject=FIRST_SUBJECT)
                .filter(schedule=None, subject__startswith=calibration.SUBJECT_PREFIX))
    serializer_class = CalibrationSerializer

    def get_serializer_class(self) -> Any:
        return CalibrationDetailSerializer if self.action == "retrieve" else CalibrationSerializer

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().narrow_queryset(queryset).filter(evaluator_version__evaluator=self.evaluator())
        dataset = query_int(self.request.query_params, "dataset", "A dataset id.")
        if self.action == "list" and dataset is not None:
            queryset = queryset.filter(subject__startswith=f"{calibration.SUBJECT_PREFIX}{dataset}/")
        return queryset

    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="Only calibrations on this dataset.")])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Calibrations, the latest first."""
        return super().list(request, *args, **kwargs)

    @extend_schema(request=CalibrationRequestSerializer, responses={202: CalibrationSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Judge every labelled item of the dataset with the evaluator's current version (on a worker); the
        calibration's report compares the judge's labels with the expected ones."""
        evaluator = self.evaluator()
        self.actor.require_team_manager(self.project().team_id)
        body = CalibrationRequestSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        run = calibration.calibration_start(actor=self.actor, evaluator=evaluator,
                                            dataset=body.validated_data["dataset"],
                                            concurrency=body.validated_data["concurrency"])
        return Response(CalibrationSerializer(self.get_queryset().get(pk=run.pk)).data,
                        status=status.HTTP_202_ACCEPTED)
