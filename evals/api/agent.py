"""The evaluation agent's endpoints, under `/api/v1/orgs/{org_slug}/projects/{project_id}/`:
`reports/` (an investigation of the project: start one, read its report, its steps, ask follow-up
questions, turn a finding's traces into a dataset) and `agent-schedules/` (regular investigations).

Everyone in the organization reads; the project team's admins and org admins start reports, ask
questions, make datasets and change schedules (403 for anyone else). Another organization's or
another project's report, step, finding or schedule answers 404."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from evals.agent import datasets as agent_datasets
from evals.agent import schedules
from evals.agent.models import AgentFinding, AgentMessage, AgentReport, AgentSchedule, AgentStep
from evals.api import agent_serializers as s
from evals.api.datasets.errors import langfuse_errors
from evals.api.datasets.serializers import DatasetSerializer
from evals.api.views import BUSY, ProjectScopedViewSet
from evals.models import Dataset, LangfuseConnection

INDEX = OpenApiParameter("index", OpenApiTypes.INT, OpenApiParameter.PATH, description="The finding's index.")
MESSAGE = OpenApiParameter("message", OpenApiTypes.INT, OpenApiParameter.QUERY,
                           description="Only the steps of this answer (a message's id); `0`: the investigation's own.")


def message_steps() -> Prefetch:
    """Each message's step indexes (AgentMessageSerializer.steps), in one query."""
    return Prefetch("steps", AgentStep.objects.only("id", "index", "message_id").order_by("index"))


class LangfuseLinks:
    """Serializers get the project's Langfuse connection (`langfuse`), to link each cited trace to its page."""

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()  # type: ignore[misc]
        if "project" in context:
            context["langfuse"] = LangfuseConnection.objects.filter(project=context["project"]).first()
        return dict(context)


class AgentReportViewSet(LangfuseLinks, mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """The agent's investigations of the project and their reports: a summary, findings whose evidence held
    (trace ids linked to Langfuse, the tool steps that show them), the steps, and the conversation."""

    queryset = AgentReport.objects.select_related("route").order_by("-created_at", "-id")
    serializer_class = s.AgentReportSerializer
    filterset_fields = ["status", "schedule"]

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action == "retrieve":
            return queryset.prefetch_related(
                Prefetch("findings", AgentFinding.objects.order_by("index")),
                Prefetch("steps", AgentStep.objects.defer("result").order_by("index")),
                Prefetch("messages", AgentMessage.objects.order_by("created_at", "id").prefetch_related(
                    message_steps())))
        return queryset.annotate(finding_count=Count("findings"))

    def get_serializer_class(self) -> Any:
        return s.AgentReportDetailSerializer if self.action == "retrieve" else s.AgentReportSerializer

    @extend_schema(request=s.AgentReportRequestSerializer, responses={202: s.AgentReportSerializer, 409: BUSY})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Start an investigation of the project's traces, scores and usage in a window (default: the last
        7 days), bounded by steps, tokens, wall time and spend; it runs on a worker."""
        from evals.agent.services import report_create

        project = self.project()
        self.actor.require_team_manager(project.team_id)
        body = s.AgentReportRequestSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        report = report_create(actor=self.actor, project=project, route=data.pop("route"), **data)
        return Response(s.AgentReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(filters=False, parameters=[MESSAGE], responses=s.AgentStepSerializer(many=True))
    @action(detail=True, methods=["get"])
    def steps(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every step of the report (its answers' included), with the tools' structured results and their
        traces linked to Langfuse; `?message=` narrows to one answer's."""
        report = self.get_object()
        rows = AgentStep.objects.visible_to(self.actor, "view").filter(report=report).order_by("index")
        message = request.query_params.get("message")
        if message is not None:
            if not message.isdigit() or len(message) > 18:
                raise ValidationError({"message": "A message's id (0: the investigation's own steps)."})
            rows = rows.filter(message__isnull=True) if int(message) == 0 else rows.filter(message_id=int(message))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.AgentStepSerializer(page, many=True,
                                                                 context=self.get_serializer_context()).data)

    @extend_schema(methods=["GET"], filters=False, responses=s.AgentMessageSerializer(many=True))
    @extend_schema(methods=["POST"], request=s.AgentMessageRequestSerializer, responses={202: s.AgentMessageSerializer})
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The conversation about the report; POST asks a question, answered on a worker with the same tools
        and evidence rules (202: the queued answer; 400 while the report or another answer is running)."""
        report = self.get_object()
        context = self.get_serializer_context()
        if request.method == "POST":
            from evals.agent.services import message_create

            self.actor.require_team_manager(self.project().team_id)
            body = s.AgentMessageRequestSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            answer = message_create(actor=self.actor, report=report, content=body.validated_data["content"])
            return Response(s.AgentMessageSerializer(answer, context=context).data, status=status.HTTP_202_ACCEPTED)
        rows = (AgentMessage.objects.visible_to(self.actor, "view").filter(report=report)
                .prefetch_related(message_steps()).order_by("created_at", "id"))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.AgentMessageSerializer(page, many=True, context=context).data)

    @extend_schema(parameters=[INDEX], request=s.AgentFindingDatasetRequestSerializer, responses={201: DatasetSerializer})
    @action(detail=True, methods=["post"], url_path=r"findings/(?P<index>[0-9]+)/dataset")
    def finding_dataset(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The finding's traces as items of a dataset (read from the project's Langfuse), so the change it
        suggests can be benchmarked across routes; again, the items are updated. Each trace's output is kept
        in `metadata.output` and the expected output left for the team to write (the finding's outputs are
        the faulty ones), unless `output_as` is `expected_output`."""
        report = self.get_object()
        finding = get_object_or_404(AgentFinding.objects.visible_to(self.actor, "change").filter(report=report),
                                    index=kwargs["index"])
        self.actor.require_team_manager(self.project().team_id)
        body = s.AgentFindingDatasetRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with langfuse_errors():
            dataset = agent_datasets.finding_dataset(actor=self.actor, finding=finding,
                                                     name=body.validated_data.get("name"),
                                                     output_as=body.validated_data["output_as"])
        counted = Dataset.objects.visible_to(self.actor, "view").annotate(item_count=Count("items"))
        return Response(DatasetSerializer(counted.get(pk=dataset.pk)).data, status=status.HTTP_201_CREATED)


class AgentScheduleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Regular investigations of the project on Celery beat (weekly by default, or any crontab, UTC), with an
    alert when a new finding appears or a known one grows."""

    queryset = AgentSchedule.objects.select_related("route")
    serializer_class = s.AgentScheduleSerializer
    filterset_fields = ["enabled"]

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        last = AgentReport.objects.filter(schedule=OuterRef("pk")).order_by("-created_at", "-id")
        return queryset.annotate(last_report_id=Subquery(last.values("id")[:1]),
                                 last_report_status=Subquery(last.values("status")[:1]),
                                 last_report_created_at=Subquery(last.values("created_at")[:1]))

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        schedule = schedules.schedule_save(actor=self.actor, project=self.project(), data=serializer.validated_data)
        return Response(self.get_serializer(schedule).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        schedule = self.get_object()
        serializer = self.get_serializer(schedule, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        schedule = schedules.schedule_save(actor=self.actor, project=self.project(), data=serializer.validated_data,
                                           schedule=schedule)
        return Response(self.get_serializer(schedule).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        schedules.schedule_delete(actor=self.actor, schedule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: s.AgentReportSerializer, 409: BUSY})
    @action(detail=True, methods=["post"], url_path="run")
    def run_now(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Start the schedule's investigation now, of its last `lookback_hours` (409 while one of it runs)."""
        report = schedules.schedule_run_now(actor=self.actor, schedule=self.get_object())
        return Response(s.AgentReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)
