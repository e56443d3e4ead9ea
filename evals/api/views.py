"""Evaluation endpoints under `/api/v1/orgs/{org_slug}/projects/{project_id}/`."""

from __future__ import annotations

from typing import Any, ClassVar

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from evals.api import serializers as s
from evals.models import EvalReport, EvalRun, EvalSchedule, EvalScore, Evaluator, LangfuseConnection, LangfuseOrgKey
from evals.services import evaluators, langfuse, reports
from evals.templates import TEMPLATES
from portal.api.base import OrgScopedViewSet
from portal.models import OrgRole, Project
from portal.tenancy import Parent

BUSY = OpenApiResponse(description="Too much work in progress: wait for a run to finish (the detail says which).")


#: the project of `.../projects/{project_id}/...`, for rows with a `project` field
PROJECT = Parent(Project, "project_id", rows="project")


class ProjectScopedViewSet(OrgScopedViewSet):
    """A resource of one project: the project must be of the organization in the URL (else 404).
    The serializers get it in their context as `project`."""

    parents: ClassVar[tuple[Parent, ...]] = (PROJECT,)
    write_role = OrgRole.MEMBER  # the team check in the services decides

    def project(self) -> Project:
        return self.parent(Project)


class LangfuseConnectionViewSet(ProjectScopedViewSet):
    """The project's Langfuse connection (one per project). Saving checks it."""

    queryset = LangfuseConnection.objects.select_related("project")
    singleton = True  # one per project: no id in the URL
    serializer_class = s.LangfuseConnectionSerializer
    pagination_class = None

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses=s.LangfuseConnectionSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        existing = self.get_queryset().first()
        serializer = self.get_serializer(existing, data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conn = langfuse.connection_save(actor=self.actor, project=self.project(), host=data["host"],
                                        public_key=data["public_key"], secret_key=data.get("secret_key"),
                                        enabled=data.get("enabled", True))
        return Response(self.get_serializer(conn).data, status=status.HTTP_200_OK if existing else 201)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        langfuse.connection_delete(actor=self.actor, connection=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={201: s.LangfuseConnectionSerializer})
    def provision(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create the project's Langfuse project and keys with the organization key (enterprise Langfuse)."""
        conn = langfuse.provision(actor=self.actor, project=self.project())
        return Response(self.get_serializer(conn).data, status=status.HTTP_201_CREATED)


class LangfuseOrgKeyViewSet(OrgScopedViewSet):
    """The organization's Langfuse organization key (admins), for creating Langfuse projects."""

    queryset = LangfuseOrgKey.objects.all()
    singleton = True  # one per organization
    serializer_class = s.LangfuseOrgKeySerializer
    read_role = OrgRole.ADMIN
    pagination_class = None

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = langfuse.org_key_save(actor=self.actor, **serializer.validated_data)
        return Response(self.get_serializer(key).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        langfuse.org_key_delete(actor=self.actor, key=self.get_object())  # in the audit log, like saving it
        return Response(status=status.HTTP_204_NO_CONTENT)


class EvaluatorViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """LLM-as-judge evaluators of the project. Changing the definition makes a new version."""

    queryset = Evaluator.objects.prefetch_related("versions__judge_route")
    serializer_class = s.EvaluatorSerializer
    filterset_fields = ["archived"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        evaluator = evaluators.evaluator_create(actor=self.actor, project=self.project(),
                                                data=serializer.validated_data)
        return Response(self.get_serializer(evaluator).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        evaluator = self.get_object()
        serializer = self.get_serializer(evaluator, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        evaluator = evaluators.evaluator_update(actor=self.actor, evaluator=evaluator, data=serializer.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=evaluator.pk)).data)

    @extend_schema(responses=s.EvaluatorVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        evaluator = self.get_object()
        return Response(s.EvaluatorVersionSerializer(evaluator.versions.select_related("judge_route"),
                                                     many=True).data)

    @extend_schema(responses={200: dict})
    @action(detail=False, methods=["get"])
    def templates(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The built-in templates an evaluator can start from."""
        return Response({key: {**t, "key": key} for key, t in TEMPLATES.items()})


class ScheduleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Scheduled evaluations (cron or interval, run by Celery beat)."""

    queryset = EvalSchedule.objects.select_related("evaluator")
    serializer_class = s.ScheduleSerializer
    filterset_fields = ["enabled", "evaluator"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        schedule = evaluators.schedule_save(actor=self.actor, project=self.project(), data=serializer.validated_data)
        return Response(self.get_serializer(schedule).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        schedule = self.get_object()
        serializer = self.get_serializer(schedule, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        schedule = evaluators.schedule_save(actor=self.actor, project=self.project(), data=serializer.validated_data,
                                            schedule=schedule)
        return Response(self.get_serializer(schedule).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        evaluators.schedule_delete(actor=self.actor, schedule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: s.RunSerializer, 409: BUSY})
    @action(detail=True, methods=["post"], url_path="run")
    def run_now(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Run the schedule now, on the window since its last successful run (409 while a run of it is in
        progress, or while the organization has as many runs in progress as it may)."""
        schedule = self.get_object()
        self.actor.require_team_manager(self.project().team_id)
        run = evaluators.eval_run_create(project=self.project(), evaluator=schedule.evaluator, schedule=schedule)
        evaluators.enqueue(run)
        return Response(s.RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Evaluation runs, with their progress while they run."""

    queryset = EvalRun.objects.select_related("evaluator_version__evaluator")
    serializer_class = s.RunSerializer
    filterset_fields = ["status", "schedule"]

    @extend_schema(request=s.RunRequestSerializer, responses={202: s.RunSerializer, 409: BUSY})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Evaluate a window of traces once, outside any schedule (409 while the organization has as many runs
        in progress as it may)."""
        self.actor.require_team_manager(self.project().team_id)
        serializer = s.RunRequestSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run = evaluators.eval_run_create(project=self.project(), evaluator=data["evaluator"],
                                         window_start=data["window_start"], window_end=data.get("window_end"))
        evaluators.enqueue(run)
        return Response(s.RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=s.ScoreSerializer(many=True))
    @action(detail=True, methods=["get"])
    def scores(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        page = self.paginate_queryset(EvalScore.objects.visible_to(self.actor, "view").filter(run=run).order_by("id"))
        return self.get_paginated_response(s.ScoreSerializer(page, many=True).data)

    @extend_schema(methods=["GET"], responses=s.ReportSerializer)
    @extend_schema(methods=["POST"], request=s.ReportRequestSerializer, responses={202: s.ReportSerializer})
    @action(detail=True, methods=["get", "post"])
    def report(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The run's LLM-written report (POST writes it, through the given route)."""
        run = self.get_object()
        if request.method == "POST":
            self.actor.require_team_manager(self.project().team_id)
            body = s.ReportRequestSerializer(data=request.data, context=self.get_serializer_context())
            body.is_valid(raise_exception=True)
            report = reports.report_create(run=run, route=body.validated_data["route"])
            return Response(s.ReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)
        report = get_object_or_404(EvalReport.objects.visible_to(self.actor, "view"), run=run)
        return Response(s.ReportSerializer(report).data)
