"""Human labels of an evaluator and calibrations of its judge, under
`/api/v1/orgs/{org_slug}/projects/{project_id}/evaluators/{evaluator_id}/`.

Everyone in the organization reads; the team's admins and org admins write."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from evals.api.datasets.calibration_serializers import (
    AgreementSerializer,
    CalibrationDetailSerializer,
    CalibrationRequestSerializer,
    CalibrationSerializer,
    HumanLabelSerializer,
)
from evals.api.datasets.serializers import ImportResultSerializer
from evals.api.datasets.uploads import LABEL_UPLOAD, CSVUpload, JSONLUpload, JSONUpload, NDJSONUpload, read_upload
from evals.api.views import PROJECT, ProjectScopedViewSet
from evals.models import EvalRun, EvalScore, Evaluator, HumanLabel
from evals.services import calibration
from portal.api.filters import query_int
from portal.tenancy import Parent


def evaluator_parent(rows: str) -> Parent:
    """The evaluator of `.../evaluators/{evaluator_id}/...`: of the project in the URL, else 404."""
    return Parent(Evaluator, "evaluator_id", within="project", rows=rows, select_related=("project",))


class HumanLabelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """People's labels of traces or dataset items, to calibrate the evaluator's judge against."""

    queryset = HumanLabel.objects.order_by("id")
    parents = (PROJECT, evaluator_parent(rows="evaluator"))
    serializer_class = HumanLabelSerializer
    filterset_fields = ["trace_id", "dataset_item", "label"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Label a trace or an item; labelling it again replaces its label."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        label, created = calibration.label_save(actor=self.actor, evaluator=self.parent(Evaluator),
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
        evaluator = self.parent(Evaluator)
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
        result = calibration.labels_report(evaluator=self.parent(Evaluator), version=version)
        return Response(AgreementSerializer(result).data)


FIRST_SUBJECT = Subquery(EvalScore.objects.filter(run=OuterRef("pk")).order_by("id").values("trace_id")[:1])


class CalibrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Calibrations of the evaluator's judge on datasets whose expected outputs are the expected labels."""

    queryset = (EvalRun.objects.select_related("evaluator_version").annotate(subject=FIRST_SUBJECT)
                .filter(schedule=None, subject__startswith=calibration.SUBJECT_PREFIX))
    parents = (PROJECT, evaluator_parent(rows="evaluator_version__evaluator"))
    serializer_class = CalibrationSerializer

    def get_serializer_class(self) -> Any:
        return CalibrationDetailSerializer if self.action == "retrieve" else CalibrationSerializer

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
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
        evaluator = self.parent(Evaluator)
        self.actor.require_team_manager(self.project().team_id)
        body = CalibrationRequestSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        run = calibration.calibration_create(actor=self.actor, evaluator=evaluator,
                                            dataset=body.validated_data["dataset"],
                                            concurrency=body.validated_data["concurrency"])
        return Response(CalibrationSerializer(self.get_queryset().get(pk=run.pk)).data,
                        status=status.HTTP_202_ACCEPTED)
