"""The evaluation pages (Django test client): what each role sees and may do, hostile input, and
another organization's pages answering 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from evals import tasks
from evals.models import (
    Benchmark,
    BenchmarkRun,
    Dataset,
    DatasetItem,
    EvalRun,
    EvalSchedule,
    Evaluator,
    EvaluatorVersion,
)
from portal import services
from portal.access import system_actor
from tests.factories import Evals, Tenant, make_evals
from tests.web.test_pages import login

pytestmark = pytest.mark.django_db


def base(t: Tenant) -> str:
    return f"/orgs/{t.org.slug}/projects/{t.project.pk}/"


def pages(t: Tenant, e: Evals) -> list[str]:
    b = base(t)
    return [f"{b}evaluators/", f"{b}evaluators/{e.evaluator}/", f"{b}schedules/{e.schedule}/", f"{b}runs/",
            f"{b}runs/{e.run}/",
            f"{b}runs/{e.run}/progress.json", f"{b}datasets/", f"{b}datasets/{e.dataset}/", f"{b}benchmarks/",
            f"{b}benchmarks/{e.benchmark}/", f"{b}calibration/", f"{b}calibration/{e.calibration}/"]


@pytest.fixture
def evals(acme: Tenant, langfuse_standin: Any, monkeypatch: Any) -> Evals:
    for task in (tasks.execute_eval_run, tasks.generate_report):
        monkeypatch.setattr(task, "delay", lambda *a, **k: None)
    return make_evals(acme, langfuse_standin)


def post_forms(html: str) -> int:
    """POST forms on the page, but the header's log-out."""
    return html.count('method="post"') - html.count('action="/logout/"')


def test_a_viewer_reads_every_page_and_sees_no_write_action(acme: Tenant, evals: Evals) -> None:
    viewer = login(acme, "viewer")
    for url in pages(acme, evals):
        answer = viewer.get(url)
        assert answer.status_code == 200, url
        if not url.endswith(".json"):
            html = answer.content.decode()
            assert post_forms(html) == 0, url
            assert 'aria-label="Project"' in html, url  # the project's tabs


def test_viewers_and_plain_members_are_refused_every_write(acme: Tenant, evals: Evals) -> None:
    b, e = base(acme), evals
    writes: list[tuple[str, dict[str, Any]]] = [
        (f"{b}evaluators/", {"name": "sneaky", "template": "helpfulness", "judge_route": "chat",
                             "score_type": "numeric", "min_value": "1", "max_value": "5",
                             "prompt_template": "{{output}}"}),
        (f"{b}evaluators/{e.evaluator}/", {"name": "renamed", "prompt_template": "new {{output}}",
                                           "judge_route": "chat", "score_type": "boolean"}),
        (f"{b}schedules/", {"name": "sneaky", "evaluator": str(e.evaluator), "interval_seconds": "60"}),
        (f"{b}schedules/{e.schedule}/disable/", {}),
        (f"{b}schedules/{e.schedule}/run/", {}),
        (f"{b}runs/", {"evaluator": str(e.evaluator), "window_start": "2026-01-01T00:00"}),
        (f"{b}runs/{e.run}/report/", {"route": "chat"}),
        (f"{b}datasets/", {"name": "sneaky"}),
        (f"{b}benchmarks/", {"name": "sneaky", "dataset": str(e.dataset), "routes": "chat"}),
        (f"{b}benchmarks/{e.benchmark}/", {}),
        (f"{b}calibration/", {"evaluator": str(e.evaluator), "dataset": str(e.dataset)}),
        (f"{b}evaluators/preview/", {"prompt_template": "{{input}}"}),
    ]
    counts = (Evaluator.objects.count(), EvaluatorVersion.objects.count(), EvalSchedule.objects.count(),
              EvalRun.objects.count(), Dataset.objects.count(), Benchmark.objects.count(),
              BenchmarkRun.objects.count())
    for role in ("viewer", "member"):
        client = login(acme, role)
        for url, body in writes:
            answer = client.post(url, body)
            assert answer.status_code in (302, 400, 403), (role, url, answer.status_code)
            if role == "viewer":
                assert answer.status_code == 403, url
        upload = client.post(f"{b}datasets/{e.dataset}/", {
            "file": SimpleUploadedFile("x.jsonl", b'{"input": "sneaky"}\n')})
        assert upload.status_code in (400, 403)
    assert (Evaluator.objects.count(), EvaluatorVersion.objects.count(), EvalSchedule.objects.count(),
            EvalRun.objects.count(), Dataset.objects.count(), Benchmark.objects.count(),
            BenchmarkRun.objects.count()) == counts
    assert EvalSchedule.objects.get(pk=e.schedule).enabled
    assert not DatasetItem.objects.filter(input="sneaky").exists()


def test_another_organizations_pages_answer_404(acme: Tenant, globex: Tenant, evals: Evals) -> None:
    outsider = login(globex, "owner")
    for url in pages(acme, evals):
        assert outsider.get(url).status_code == 404, url
    assert outsider.post(f"{base(acme)}runs/", {"evaluator": str(evals.evaluator),
                                                "window_start": "2026-01-01T00:00"}).status_code == 404
    # acme's objects under globex's own project: 404 too (the object must be of the project in the URL)
    g = base(globex)
    for url in (f"{g}runs/{evals.run}/", f"{g}runs/{evals.run}/progress.json", f"{g}evaluators/{evals.evaluator}/",
                f"{g}schedules/{evals.schedule}/",
                f"{g}datasets/{evals.dataset}/", f"{g}benchmarks/{evals.benchmark}/",
                f"{g}calibration/{evals.calibration}/"):
        assert outsider.get(url).status_code == 404, url
    # another project of the same organization: its URL does not reach this project's objects
    other = services.project_create(actor=system_actor(acme.org, "tests"), data={"name": "acme-other",
                                                                                "team": acme.team})
    owner, o = login(acme, "owner"), f"/orgs/{acme.org.slug}/projects/{other.pk}/"
    for url in (f"{o}runs/{evals.run}/", f"{o}evaluators/{evals.evaluator}/", f"{o}datasets/{evals.dataset}/",
                f"{o}schedules/{evals.schedule}/",
                f"{o}benchmarks/{evals.benchmark}/", f"{o}calibration/{evals.calibration}/"):
        assert owner.get(url).status_code == 404, url
    assert owner.post(f"{o}schedules/{evals.schedule}/disable/").status_code == 404
    assert EvalSchedule.objects.get(pk=evals.schedule).enabled
    # an evaluation run is not a calibration, nor the other way round
    assert owner.get(f"{base(acme)}calibration/{evals.run}/").status_code == 404


def test_create_an_evaluator_from_a_template_with_a_preview_on_a_langfuse_trace(
        acme: Tenant, evals: Evals, langfuse_standin: Any) -> None:
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 1)
    owner = login(acme, "owner")
    form = owner.get(f"{base(acme)}evaluators/?template=hallucination").content.decode()
    assert "context = metadata.context" in form and "id=\"templates-data\"" in form
    preview = owner.post(f"{base(acme)}evaluators/preview/", {
        "prompt_template": "Q: {{input}}\nA: {{output}}\nC: {{ctx}}", "variables": "ctx = metadata.missing\nbad"})
    body = preview.json()
    assert preview.status_code == 200 and "from Langfuse" in body["source"]
    assert "question 0" in body["preview"] and "answer 0" in body["preview"] and "C: (none)" in body["preview"]
    assert body["variables"] == ["input", "output", "ctx"] and body["bad_variables"] == ["bad"]
    # the same preview without JavaScript: the form's Preview button
    page = owner.post(f"{base(acme)}evaluators/", {"name": "x", "prompt_template": "Q: {{input}}", "preview": "1",
                                                  "judge_route": "chat", "score_type": "numeric"})
    assert page.status_code == 200 and "question 0" in page.content.decode()
    created = owner.post(f"{base(acme)}evaluators/", {
        "name": "helpful", "template": "helpfulness", "judge_route": "chat", "score_type": "numeric",
        "min_value": "1", "max_value": "5", "pass_threshold": "4", "variables": "",
        "prompt_template": "Rate {{output}} for {{input}}, 1-5."})
    evaluator = Evaluator.objects.get(project=acme.project, name="helpful")
    assert created.status_code == 302 and created["Location"].endswith(f"/evaluators/{evaluator.pk}/")
    assert evaluator.current is not None and evaluator.current.template_key == "helpfulness"
    assert evaluator.current.prompt_template == "Rate {{output}} for {{input}}, 1-5."
    edited = owner.post(f"{base(acme)}evaluators/{evaluator.pk}/", {
        "name": "helpful", "judge_route": "chat", "score_type": "numeric", "min_value": "1", "max_value": "5",
        "pass_threshold": "4", "prompt_template": "Rate {{output}} (asked: {{input}}) from 1 to 5.", "variables": ""})
    assert edited.status_code == 302 and Evaluator.objects.get(pk=evaluator.pk).current.version == 2


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"name": "no/slashes"}, "name", "1-35 letters"),
    ({"prompt_template": "no variable at all"}, "prompt_template", "uses no variable"),
    ({"min_value": "5", "max_value": "1"}, "min_value", "min_value &lt; max_value"),
    ({"min_value": "many"}, "min_value", "A valid number is required."),
    ({"judge_route": "no-such-route"}, "judge_route", "does not exist"),
    ({"variables": "just words"}, "variables", "Not &#x27;name = path&#x27;"),
    ({"score_type": "shouting"}, "score_type", "is not a valid choice"),
])
def test_a_bad_evaluator_is_refused_with_the_error_next_to_its_field(
        acme: Tenant, evals: Evals, body: dict[str, str], field: str, message: str) -> None:
    good = {"name": "fine", "judge_route": "chat", "score_type": "numeric", "min_value": "1", "max_value": "5",
            "prompt_template": "Rate {{output}}", "variables": ""}
    answer = login(acme, "owner").post(f"{base(acme)}evaluators/", good | body)
    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert not Evaluator.objects.filter(name__in=["fine", "no/slashes"]).exists()


def test_upload_a_dataset_shows_every_bad_row_and_imports_nothing(acme: Tenant, evals: Evals) -> None:
    owner, url = login(acme, "owner"), f"{base(acme)}datasets/{evals.dataset}/"
    before = DatasetItem.objects.filter(dataset_id=evals.dataset).count()
    bad = b'{"input": "fine", "id": "a"}\n{"input": \n["not an object"]\n{"input": "again", "id": "a"}\n'
    answer = owner.post(url, {"file": SimpleUploadedFile("items.jsonl", bad)})
    html = answer.content.decode()
    assert answer.status_code == 400
    assert "line 2:" in html and "line 3:" in html and "line 4:" in html and "already on line 1" in html
    assert DatasetItem.objects.filter(dataset_id=evals.dataset).count() == before
    assert owner.post(url, {"file": SimpleUploadedFile("x.csv", b"\xff\xfe\x00garbage")}).status_code == 400
    assert owner.post(url, {}).status_code == 400  # no file
    good = b"input,expected_output,id\nWhat is 2+2?,4,sum\nCapital of France?,Paris,fr\n"
    done = owner.post(url, {"file": SimpleUploadedFile("items.csv", good)}, follow=True)
    assert done.status_code == 200 and "2 items added" in done.content.decode()
    assert DatasetItem.objects.filter(dataset_id=evals.dataset, external_id="fr", expected_output="Paris").exists()


def test_start_a_run_then_follow_its_progress(acme: Tenant, evals: Evals) -> None:
    owner = login(acme, "owner")
    EvalRun.objects.filter(pk=evals.run).update(status="succeeded")
    bad = owner.post(f"{base(acme)}runs/", {"evaluator": "999999999999999999999", "window_start": "yesterday"})
    assert bad.status_code == 400 and "Invalid pk" in bad.content.decode()
    backwards = owner.post(f"{base(acme)}runs/", {"evaluator": str(evals.evaluator), "window_start": "2026-02-01T00:00",
                                                  "window_end": "2026-01-01T00:00"})
    assert backwards.status_code == 400 and "Must be after the start." in backwards.content.decode()
    calibration = owner.get(f"{base(acme)}runs/{evals.calibration}/")
    assert calibration.status_code == 302 and calibration["Location"].endswith(f"/calibration/{evals.calibration}/")
    answer = owner.post(f"{base(acme)}runs/", {"evaluator": str(evals.evaluator), "window_start": "2026-01-01T00:00"})
    run = EvalRun.objects.latest("pk")
    assert answer.status_code == 302 and answer["Location"].endswith(f"/runs/{run.pk}/")
    page = owner.get(answer["Location"]).content.decode()
    assert 'role="progressbar"' in page and 'data-working="1"' in page and "progress.json" in page
    EvalRun.objects.filter(pk=run.pk).update(status="running", processed=3, total=12)
    progress = owner.get(f"{base(acme)}runs/{run.pk}/progress.json").json()
    assert progress["status"] == "running" and progress["progress"] == 0.25
    EvalRun.objects.filter(pk=run.pk).update(status="succeeded", processed=12, finished_at=timezone.now())
    done = owner.get(answer["Location"]).content.decode()
    assert 'data-working=""' in done and "Write report" in done


def test_a_finished_run_shows_scores_lowest_first_linked_to_langfuse_and_its_report(
        acme: Tenant, evals: Evals) -> None:
    html = login(acme, "viewer").get(f"{base(acme)}runs/{evals.run}/").content.decode()
    assert "acme-trace-1" in html and "/traces/acme-trace-1" in html and "acme report" in html


def test_the_benchmark_matrix_and_its_charts(acme: Tenant, evals: Evals) -> None:
    matrix = {"evaluators": [{"name": "acme-correct", "version": 1}], "metrics": [{"name": "exact_match"}],
              "routes": [{"route": "chat", "route_id": acme.route.pk, "items": 3, "completed": 3, "errors": 0,
                          "error_rate": 0.0, "passed": 2, "undecided": 0, "pass_rate": 2 / 3,
                          "evaluators": {"acme-correct": {"mean": 0.5, "scored": 3, "failed": 0, "pass_rate": 0.5}},
                          "metrics": {"exact_match": {"pass_rate": 1 / 3, "passed": 1, "applicable": 3}},
                          "cost": 0.003, "cost_per_item": 0.001, "judge_cost": 0.0, "latency_p50_ms": 120.0,
                          "latency_p95_ms": 180.5}], "total_cost": 0.003}
    BenchmarkRun.objects.filter(pk=evals.benchmark_run).update(matrix=matrix)
    html = login(acme, "viewer").get(f"{base(acme)}benchmarks/{evals.benchmark}/").content.decode()
    assert 'id="matrix"' in html and "67%" in html and "33%" in html and "180.5" in html
    assert html.count('class="chart') >= 3 and "results.csv" in html


def test_calibration_report_and_hostile_form(acme: Tenant, evals: Evals) -> None:
    owner = login(acme, "owner")
    html = owner.get(f"{base(acme)}calibration/{evals.calibration}/").content.decode()
    assert "Cohen" in html and "Confusion" in html or "items compared" in html
    for body in ({"evaluator": "x", "dataset": "1"}, {"evaluator": "１２", "dataset": "1"},
                 {"evaluator": str(evals.evaluator), "dataset": "99999999999999999999"}, {}):
        assert owner.post(f"{base(acme)}calibration/", body).status_code == 400, body


def test_schedules_are_created_toggled_and_refused_with_field_errors(acme: Tenant, evals: Evals) -> None:
    owner, b = login(acme, "owner"), base(acme)
    bad = owner.post(f"{b}schedules/", {"name": "both", "evaluator": str(evals.evaluator), "cron": "* * * * *",
                                        "interval_seconds": "60"})
    assert bad.status_code == 400 and "Give either a crontab" in bad.content.decode()
    assert owner.post(f"{b}schedules/", {"name": "nightly", "evaluator": str(evals.evaluator),
                                         "cron": "0 3 * * *", "enabled": "on"}).status_code == 302
    schedule = EvalSchedule.objects.get(name="nightly")
    assert schedule.enabled and schedule.periodic_task is not None
    owner.post(f"{b}schedules/{schedule.pk}/disable/")
    assert not EvalSchedule.objects.get(pk=schedule.pk).enabled
    assert owner.post(f"{b}schedules/{schedule.pk}/explode/").status_code == 404


def test_build_a_dataset_from_traces_and_refuse_bad_filters(acme: Tenant, evals: Evals, langfuse_standin: Any) -> None:
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 3, name="support-chat")
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 2, name="other")
    owner, url = login(acme, "owner"), f"{base(acme)}datasets/{evals.dataset}/"
    bad = owner.post(url, {"action": "build", "max_items": "0", "from_time": "2026-02-01T00:00",
                           "to_time": "2026-01-01T00:00"})
    assert bad.status_code == 400 and "greater than or equal to 1" in bad.content.decode()
    done = owner.post(url, {"action": "build", "name": "support-chat", "max_items": "10",
                            "output_as": "expected_output"}, follow=True)
    assert "3 items added" in done.content.decode()
    assert DatasetItem.objects.filter(dataset_id=evals.dataset).exclude(source_trace_id="").count() == 3


def test_edit_a_schedule_keeps_what_the_form_does_not_show(acme: Tenant, evals: Evals) -> None:
    EvalSchedule.objects.filter(pk=evals.schedule).update(filters={"metadata": {"env": "prod"}, "tags": ["a"]})
    owner, url = login(acme, "owner"), f"{base(acme)}schedules/{evals.schedule}/"
    form = owner.get(url).content.decode()
    assert 'value="acme-hourly"' in form and 'value="a"' in form and 'value="3600"' in form
    bad = owner.post(url, {"name": "acme-hourly", "evaluator": str(evals.evaluator), "cron": "every day"})
    assert bad.status_code == 400 and "Not a 5-field crontab" in bad.content.decode()
    saved = owner.post(url, {"name": "acme-nightly", "evaluator": str(evals.evaluator), "cron": "0 2 * * *",
                             "filter_tags": "a, b", "sampling_rate": "0.5"})
    assert saved.status_code == 302
    schedule = EvalSchedule.objects.get(pk=evals.schedule)
    assert (schedule.name, schedule.cron, schedule.interval_seconds, schedule.sampling_rate, schedule.enabled) == (
        "acme-nightly", "0 2 * * *", None, 0.5, False)
    assert schedule.filters == {"metadata": {"env": "prod"}, "tags": ["a", "b"]}
    assert login(acme, "viewer").post(url, {"name": "x"}).status_code == 403
    assert login(acme, "member").post(url, {"name": "x", "evaluator": str(evals.evaluator),
                                             "interval_seconds": "60"}).status_code == 400
    assert EvalSchedule.objects.get(pk=evals.schedule).name == "acme-nightly"
