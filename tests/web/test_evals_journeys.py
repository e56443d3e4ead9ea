"""The evaluation pages in a real browser: create an evaluator with the live preview, start a run and
watch its bar move to done, read the scores and the report; upload a dataset with a bad row; a
benchmark's matrix; a calibration report. axe-core and screenshots on every page."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from evals import tasks, tasks_benchmarks, tasks_datasets
from evals.models import BenchmarkRun, EvalReport, EvalRun, EvalScore, Evaluator
from tests.factories import Evals, Tenant, make_evals
from tests.web.conftest import check_page, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def evals(acme: Tenant, langfuse_standin: Any, monkeypatch: Any) -> Evals:
    """The evaluation objects; no worker (the test plays the worker's part where it matters)."""
    for task in (tasks.execute_eval_run, tasks.generate_report, tasks_datasets.execute_calibration,
                 tasks_benchmarks.execute_benchmark_run):
        monkeypatch.setattr(task, "delay", lambda *a, **k: None)
    found = make_evals(acme, langfuse_standin)
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 3, name="support-chat")
    return found


def test_create_an_evaluator_with_the_preview_then_run_it_and_watch_the_bar(
        live_server: Any, acme: Tenant, evals: Evals, browser_page: Any) -> None:
    page = browser_page()
    base = f"{live_server.url}/orgs/{acme.org.slug}/projects/{acme.project.pk}"
    sign_in(page, live_server, acme.users["owner"])
    page.goto(f"{base}/evaluators/")
    page.get_by_label("Start from a template").select_option("relevance")
    assert "grade how relevant" in page.locator("#ev-prompt").input_value()
    wait_until(page, "document.getElementById('ev-preview').textContent.includes('question 0')")
    page.locator("#ev-prompt").fill("Is {{output}} relevant to {{input}}? Context: {{ctx}}")
    page.locator("#ev-variables").fill("ctx = metadata.context")
    wait_until(page, "document.getElementById('ev-preview').textContent.includes('Context: (none)')")
    assert page.locator("#ev-used code").all_text_contents() == ["output", "input", "ctx"]
    assert "from Langfuse" in page.locator("#ev-preview-source").text_content()
    page.locator("#ev-name").fill("on-topic")
    check_page(page, "evals-evaluators")
    page.get_by_role("button", name="Create evaluator").click()
    page.wait_for_url(f"{base}/evaluators/*/")
    assert "Evaluator 'on-topic' created" in page.content()
    check_page(page, "evals-evaluator")
    evaluator = Evaluator.objects.get(name="on-topic")

    page.goto(f"{base}/runs/")
    page.get_by_label("Evaluator").select_option(str(evaluator.pk))
    page.get_by_label("Traces from").fill("2026-01-01T00:00")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(f"{base}/runs/*/")
    run = EvalRun.objects.latest("pk")
    assert page.locator("#run-status").text_content() == "queued"
    EvalRun.objects.filter(pk=run.pk).update(status="running", processed=1, total=4, started_at=timezone.now())
    wait_until(page, "document.querySelector('#run-progress .bar span').style.width === '25%'")
    EvalRun.objects.filter(pk=run.pk).update(processed=3, scored=3, considered=4, sampled=4)
    wait_until(page, "document.querySelector('#run-progress .bar span').style.width === '75%'")
    assert page.locator("#run-progress [role=progressbar]").get_attribute("aria-valuenow") == "3"
    check_page(page, "evals-run-working")
    for i, value in enumerate((1.0, 0.0, 1.0, 1.0)):
        EvalScore.objects.create(project=acme.project, evaluator_version=run.evaluator_version, run=run,
                                 trace_id=f"trace-{i}", status="scored", value=value, comment=f"judged {i}",
                                 scored_at=timezone.now())
    EvalReport.objects.create(run=run, route=acme.route, status="succeeded",
                              content="Mostly on topic.\n\n### Off-topic answers\n...",
                              groups=[{"pattern": "Off-topic answers", "explanation": "The answer ignores the "
                                       "question.", "suggestion": "Restate the question first.",
                                       "trace_ids": ["trace-1"]}])
    EvalRun.objects.filter(pk=run.pk).update(status="succeeded", processed=4, scored=4, mean_score=0.75,
                                             distribution={"0.0": 1, "1.0": 3}, judge_cost=Decimal("0.0012"),
                                             finished_at=timezone.now())
    page.wait_for_selector("#scores tbody tr:nth-child(4)")  # the page reloaded itself when the run finished
    assert page.locator("#run-status").text_content() == "succeeded"
    assert page.locator("#scores tbody tr").first.locator("td").nth(1).text_content() == "0"  # lowest first
    assert "/traces/trace-1" in (page.locator("#scores tbody tr a").first.get_attribute("href") or "")
    report = page.locator("#report").text_content() or ""
    assert "Off-topic answers" in report and "Mostly on topic." in report and "###" not in report
    assert "/traces/trace-1" in (page.locator("#report a").first.get_attribute("href") or "")
    check_page(page, "evals-run")
    page.goto(f"{base}/runs/")
    check_page(page, "evals-runs")


def test_upload_a_dataset_with_a_bad_row_then_a_benchmark_and_a_calibration(
        live_server: Any, acme: Tenant, evals: Evals, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page()
    base = f"{live_server.url}/orgs/{acme.org.slug}/projects/{acme.project.pk}"
    sign_in(page, live_server, acme.users["owner"])
    page.goto(f"{base}/datasets/")
    page.get_by_label("Name").fill("faq")
    page.get_by_role("button", name="Create dataset").click()
    page.wait_for_url(f"{base}/datasets/*/")
    bad = tmp_path / "faq.jsonl"
    bad.write_text('{"input": "How do I log in?", "expected_output": "With SSO."}\n{"input": oops}\n')
    page.get_by_label("File", exact=True).set_input_files(str(bad))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_selector("#file-errors")
    assert "line 2:" in page.locator("#file-errors").text_content()
    assert page.locator("#items tbody tr").first.text_content().strip() == "No items yet."
    check_page(page, "evals-dataset-errors")
    bad.write_text('{"input": "How do I log in?", "expected_output": "With SSO."}\n'
                   '{"input": "Where are invoices?", "expected_output": "Billing > Invoices."}\n')
    page.get_by_label("File", exact=True).set_input_files(str(bad))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_selector("text=2 items added")
    assert page.locator("#items tbody tr").count() == 2
    check_page(page, "evals-dataset")
    page.goto(f"{base}/datasets/")
    check_page(page, "evals-datasets")

    BenchmarkRun.objects.filter(pk=evals.benchmark_run).update(matrix={
        "evaluators": [{"name": "acme-correct", "version": 1}], "metrics": [{"name": "exact_match"}],
        "routes": [{"route": "chat", "route_id": acme.route.pk, "items": 3, "completed": 3, "errors": 0,
                    "error_rate": 0.0, "passed": 2, "undecided": 0, "pass_rate": 2 / 3,
                    "evaluators": {"acme-correct": {"mean": 0.67, "scored": 3, "failed": 0, "pass_rate": 0.67}},
                    "metrics": {"exact_match": {"pass_rate": 1 / 3, "passed": 1, "applicable": 3}},
                    "cost": 0.003, "cost_per_item": 0.001, "judge_cost": 0.0, "latency_p50_ms": 120.0,
                    "latency_p95_ms": 180.5}], "total_cost": 0.003})
    page.goto(f"{base}/benchmarks/")
    check_page(page, "evals-benchmarks")
    page.get_by_role("link", name="acme-bench").click()
    page.wait_for_selector("#matrix")
    assert page.locator("#matrix tbody tr th").first.text_content() == "chat"
    assert "67%" in page.locator("#matrix tbody tr").first.text_content()
    page.wait_for_selector("figure.chart-figure[data-drawn]", state="attached")
    check_page(page, "evals-benchmark")

    page.goto(f"{base}/calibration/")
    check_page(page, "evals-calibration")
    for i, score in enumerate(EvalScore.objects.filter(run_id=evals.calibration).order_by("pk")):
        EvalScore.objects.filter(pk=score.pk).update(status="scored", value=float(i % 2),
                                                     label=("false", "true")[i % 2], comment=f"judged {i}",
                                                     scored_at=timezone.now())
    EvalRun.objects.filter(pk=evals.calibration).update(status="succeeded", processed=3, finished_at=timezone.now())
    page.goto(f"{base}/calibration/{evals.calibration}/")
    assert "Cohen's kappa" in page.content() and page.locator("#confusion tbody tr").count() == 2
    assert page.locator("#disagreements tbody tr").count() >= 1
    check_page(page, "evals-calibration-report")

    page.goto(f"{base}/schedules/{evals.schedule}/")
    page.get_by_label("Sampling rate").fill("0.5")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Schedule 'acme-hourly' saved.")
    assert page.get_by_label("Sampling rate").input_value() == "0.5"
    check_page(page, "evals-schedule")


def test_a_viewer_sees_the_pages_without_write_actions(
        live_server: Any, acme: Tenant, evals: Evals, browser_page: Any) -> None:
    page = browser_page()
    base = f"{live_server.url}/orgs/{acme.org.slug}/projects/{acme.project.pk}"
    sign_in(page, live_server, acme.users["viewer"])
    page.goto(f"{base}/evaluators/")
    assert page.locator("#evaluator-form").count() == 0 and page.get_by_role("button", name="Run now").count() == 0
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Runs").click()
    page.wait_for_url(f"{base}/runs/")
    assert page.get_by_role("button", name="Start run").count() == 0
    check_page(page, "evals-runs-viewer")
