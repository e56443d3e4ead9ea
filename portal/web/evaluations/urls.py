"""Evaluations: evaluators, schedules, runs and reports, datasets, benchmarks, calibration."""
from django.urls import path

from portal.web.evaluations import agent, benchmarks, calibration, datasets, evaluators, runs

P = "orgs/<str:org_slug>/projects/<int:project_id>"

urlpatterns = [
    path(f"{P}/evaluators/", evaluators.EvaluatorsPage.as_view(), name="evaluators"),
    path(f"{P}/evaluators/preview/", evaluators.EvaluatorPreview.as_view(), name="evaluator-preview"),
    path(f"{P}/evaluators/<int:evaluator_id>/", evaluators.EvaluatorPage.as_view(), name="evaluator"),
    path(f"{P}/schedules/", evaluators.SchedulesPage.as_view(), name="schedules"),
    path(f"{P}/schedules/<int:schedule_id>/", evaluators.SchedulePage.as_view(), name="schedule"),
    path(f"{P}/schedules/<int:schedule_id>/<str:verb>/", evaluators.ScheduleAction.as_view(), name="schedule-action"),
    path(f"{P}/runs/", runs.RunsPage.as_view(), name="runs"),
    path(f"{P}/runs/<int:run_id>/", runs.RunPage.as_view(), name="run"),
    path(f"{P}/runs/<int:run_id>/progress.json", runs.RunProgress.as_view(), name="run-progress"),
    path(f"{P}/runs/<int:run_id>/report/", runs.RunReport.as_view(), name="run-report"),
    path(f"{P}/datasets/", datasets.DatasetsPage.as_view(), name="datasets"),
    path(f"{P}/datasets/<int:dataset_id>/", datasets.DatasetPage.as_view(), name="dataset"),
    path(f"{P}/benchmarks/", benchmarks.BenchmarksPage.as_view(), name="benchmarks"),
    path(f"{P}/benchmarks/<int:benchmark_id>/", benchmarks.BenchmarkPage.as_view(), name="benchmark"),
    path(f"{P}/benchmarks/<int:benchmark_id>/runs/<int:run_id>/progress.json",
         benchmarks.BenchmarkRunProgress.as_view(), name="benchmark-run-progress"),
    path(f"{P}/calibration/", calibration.CalibrationPage.as_view(), name="calibration"),
    path(f"{P}/calibration/<int:run_id>/", calibration.CalibrationReportPage.as_view(), name="calibration-report"),
    path(f"{P}/agent/", agent.AgentReportsPage.as_view(), name="agent-reports"),
    path(f"{P}/agent/<int:report_id>/", agent.AgentReportPage.as_view(), name="agent-report"),
    path(f"{P}/agent/<int:report_id>/progress.json", agent.AgentReportProgress.as_view(), name="agent-report-progress"),
    path(f"{P}/agent/<int:report_id>/questions/", agent.AgentQuestion.as_view(), name="agent-question"),
    path(f"{P}/agent/<int:report_id>/findings/<int:index>/dataset/", agent.AgentFindingDataset.as_view(),
         name="agent-finding-dataset"),
    path(f"{P}/agent/schedules/", agent.AgentSchedulesPage.as_view(), name="agent-schedules"),
    path(f"{P}/agent/schedules/<int:schedule_id>/", agent.AgentSchedulePage.as_view(), name="agent-schedule"),
    path(f"{P}/agent/schedules/<int:schedule_id>/<str:verb>/", agent.AgentScheduleAction.as_view(),
         name="agent-schedule-action"),
]
