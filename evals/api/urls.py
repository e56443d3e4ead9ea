"""Evaluation endpoints under /api/v1/orgs/{org_slug}/projects/{project_id}/."""

from django.urls import path

from evals.api import agent, benchmarks, views
from evals.api import datasets as dataset_views
from portal.api.routers import Router

PROJECT = r"orgs/(?P<org_slug>[^/]+)/projects/(?P<project_id>[0-9]+)"

router = Router(trailing_slash=True)
router.register(f"{PROJECT}/evaluators", views.EvaluatorViewSet, basename="evaluator")
router.register(f"{PROJECT}/schedules", views.ScheduleViewSet, basename="schedule")
router.register(f"{PROJECT}/runs", views.RunViewSet, basename="run")
# datasets/, benchmarks/, calibration: registered below by their modules
router.register(f"{PROJECT}/benchmarks", benchmarks.BenchmarkViewSet, basename="benchmark")
router.register(f"{PROJECT}/benchmarks/(?P<benchmark_id>[0-9]+)/runs", benchmarks.BenchmarkRunViewSet,
                basename="benchmark-run")

router.register(f"{PROJECT}/datasets", dataset_views.DatasetViewSet, basename="dataset")
router.register(f"{PROJECT}/datasets/(?P<dataset_id>[0-9]+)/items", dataset_views.DatasetItemViewSet,
                basename="dataset-item")
router.register(f"{PROJECT}/evaluators/(?P<evaluator_id>[0-9]+)/labels", dataset_views.HumanLabelViewSet,
                basename="evaluator-label")
router.register(f"{PROJECT}/evaluators/(?P<evaluator_id>[0-9]+)/calibrations", dataset_views.CalibrationViewSet,
                basename="evaluator-calibration")
router.register(f"{PROJECT}/reports", agent.AgentReportViewSet, basename="agent-report")
router.register(f"{PROJECT}/agent-schedules", agent.AgentScheduleViewSet, basename="agent-schedule")

langfuse_detail = views.LangfuseConnectionViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})

langfuse_provision = views.LangfuseConnectionViewSet.as_view({"post": "provision"})
org_key_detail = views.LangfuseOrgKeyViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})

urlpatterns = [
    path("orgs/<str:org_slug>/langfuse/", org_key_detail, name="org-langfuse-key"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/langfuse/", langfuse_detail, name="project-langfuse"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/langfuse/provision/", langfuse_provision,
         name="project-langfuse-provision"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/benchmarks/<int:benchmark_id>/runs/<int:pk>/results.csv",
         benchmarks.results_csv, name="benchmark-run-results-csv"),
    *router.urls,
]
