"""Benchmark endpoints under `/api/v1/orgs/{org_slug}/projects/{project_id}/benchmarks/`.

Anyone in the organization reads; the project team's admins and org admins
write and start runs (the services check it). Another organization's or
project's benchmark answers 404."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from evals.api.serializers import RouteName, project_rows
from evals.api.views import BUSY, ProjectScopedViewSet
from evals.models import Benchmark, BenchmarkRun, Dataset, Evaluator
from evals.services import benchmarks
from portal.models import Project
from portal.tenancy import Parent

METRICS_HELP = ('Deterministic metrics: [{"type": "exact_match"}, {"type": "contains", "value": "..."}, '
                '{"type": "regex", "pattern": "..."}, {"type": "json_valid"}]; each may add "ignore_case" '
                '(not json_valid) and a distinct "name". Items\' expected_output is the reference.')
MATRIX_HELP = ("Per route (routes[]): items, completed, errors, error_rate, passed, undecided, pass_rate, "
               "evaluators.<name>.{mean, scored, failed, pass_rate}, metrics.<name>.{pass_rate, passed, "
               "applicable}, cost, cost_per_item, judge_cost, latency_p50_ms, latency_p95_ms; plus the setup "
               "(dataset, evaluators with versions, metrics), total_cost and langfuse {run_names, recorded, error}.")
COMPARISON_HELP = ("Against the previous succeeded or partial run: previous_run, routes[].changes[] {measure, "
                   "previous, current, change, regression}, regressions[], new_routes, and the rules applied.")


class BenchmarkSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.none())
    routes = RouteName(many=True, help_text="Routes of the organization, by name, that the project's team may use.")
    evaluators = serializers.PrimaryKeyRelatedField(many=True, required=False,
                                                    queryset=Evaluator.objects.none())
    metrics = serializers.ListField(child=serializers.DictField(), required=False, max_length=50,
                                    help_text=METRICS_HELP)

    class Meta:
        model = Benchmark
        fields = ["id", "name", "dataset", "routes", "evaluators", "metrics", "concurrency", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        datasets, evaluators = project_rows(self.context, Dataset), project_rows(self.context, Evaluator)
        if datasets is not None and evaluators is not None:
            fields["dataset"].queryset = datasets  # type: ignore[attr-defined]
            fields["evaluators"].child_relation.queryset = evaluators  # type: ignore[attr-defined]
        return fields


class BenchmarkRunSerializer(serializers.ModelSerializer):
    benchmark = serializers.CharField(source="benchmark.name", read_only=True)
    progress = serializers.SerializerMethodField()
    matrix = serializers.JSONField(read_only=True, help_text=MATRIX_HELP)
    comparison = serializers.JSONField(read_only=True, help_text=COMPARISON_HELP)

    class Meta:
        model = BenchmarkRun
        fields = ["id", "benchmark", "status", "processed", "total", "progress", "matrix", "comparison",
                  "langfuse_run_name", "total_cost", "error", "created_at", "started_at", "finished_at"]
        read_only_fields = fields

    def get_progress(self, obj: BenchmarkRun) -> float | None:
        if obj.status in ("succeeded", "partial", "failed"):
            return 1.0
        return round(obj.processed / obj.total, 3) if obj.total else None


class BenchmarkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Benchmarks: a dataset through a set of routes, scored by evaluators and deterministic metrics."""

    queryset = Benchmark.objects.prefetch_related("routes", "evaluators")
    serializer_class = BenchmarkSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        benchmark = benchmarks.benchmark_create(actor=self.actor, project=self.project(),
                                                data=serializer.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=benchmark.pk)).data,
                        status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        benchmark = self.get_object()
        serializer = self.get_serializer(benchmark, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        benchmarks.benchmark_update(actor=self.actor, benchmark=benchmark, data=serializer.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=benchmark.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        benchmarks.benchmark_delete(actor=self.actor, benchmark=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: BenchmarkRunSerializer, 409: BUSY})
    @action(detail=True, methods=["post"], url_path="run")
    def run(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Run the benchmark now (one run at a time: 409 while one is in progress, or while the organization
        has as many benchmark runs in progress as it may)."""
        run = benchmarks.benchmark_run_create(actor=self.actor, benchmark=self.get_object())
        return Response(BenchmarkRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class CSVRenderer(BaseRenderer):
    """Lets a client ask for `text/csv`; errors still come as a JSON body."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        return data.encode() if isinstance(data, str) else json.dumps(data).encode()


BENCHMARK_ID = OpenApiParameter("benchmark_id", OpenApiTypes.INT, OpenApiParameter.PATH)


@extend_schema_view(list=extend_schema(parameters=[BENCHMARK_ID]), retrieve=extend_schema(parameters=[BENCHMARK_ID]))
class BenchmarkRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Runs of a benchmark: progress while they run, then the matrix and the comparison."""

    queryset = BenchmarkRun.objects.select_related("benchmark")
    parents = (Parent(Project, "project_id"), Parent(Benchmark, "benchmark_id", within="project", rows="benchmark"))
    serializer_class = BenchmarkRunSerializer
    filterset_fields = ["status"]

    def get_renderers(self) -> list[BaseRenderer]:
        if self.action == "results_csv":
            return [JSONRenderer(), CSVRenderer()]
        return super().get_renderers()

    @extend_schema(operation_id="orgs_projects_benchmarks_runs_results_csv",
                   parameters=[BENCHMARK_ID, OpenApiParameter("format", exclude=True)],
                   responses={(200, "text/csv"): OpenApiTypes.STR})
    def results_csv(self, request: Request, *args: Any, **kwargs: Any) -> StreamingHttpResponse:
        """One row per item x route: output, scores, pass, latency, cost, error, trace id."""
        run = self.get_object()
        response = StreamingHttpResponse(benchmarks.results_csv(run), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (f'attachment; filename="benchmark-{run.benchmark_id}-run-{run.pk}.csv"')
        return response


#: `.../runs/{id}/results.csv` (no trailing slash, like a file): registered in `evals/api/urls.py`.
results_csv = BenchmarkRunViewSet.as_view({"get": "results_csv"})
