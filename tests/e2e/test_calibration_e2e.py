"""Judge calibration end to end: the real Celery worker judges a dataset's
labelled items through the real LiteLLM proxy with the project's service key,
with judge routes whose answers are known, and the report's accuracy, kappa
and baseline are what those answers make them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evals.models import EvalScore
from gateway.models import KeyKind, UsageRecord, VirtualKey
from tests.e2e.conftest import Stack
from tests.e2e.helpers import until
from tests.factories import Tenant
from tests.llm_standin import LLMStandin

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
# 10 labelled items: (expected label, the marker in the answer the judge reads, how many); one unlabelled
ITEMS = [("true", "ANSWER-OK", 5), ("true", "ANSWER-WRONG", 2), ("false", "ANSWER-OK", 1),
         ("false", "ANSWER-WRONG", 2)]


def project_url(t: Tenant, path: str) -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


def judge_route(t: Tenant, name: str, **deployment: Any) -> None:
    response = t.client("admin").post(t.url("routes/"), {"name": name, "deployments": [
        {"model": "gpt-4o-mini", **deployment}]}, format="json")
    assert response.status_code == 201, response.content


def labelled_dataset(t: Tenant) -> int:
    dataset = t.client("team_admin").post(project_url(t, "datasets/"), {"name": "judge-check"}, format="json")
    assert dataset.status_code == 201, dataset.content
    lines = [{"id": f"{label}-{marker}-{i}", "input": f"question {i}", "expected_output": label,
              "metadata": {"output": f"{marker}: answer {i}"}}
             for label, marker, n in ITEMS for i in range(n)]
    lines.append({"id": "unlabelled", "input": "q", "metadata": {"output": "ANSWER-OK"}})
    imported = t.client("team_admin").post(project_url(t, f"datasets/{dataset.json()['id']}/import/"),
                                           data="\n".join(json.dumps(x) for x in lines).encode(),
                                           content_type="application/x-ndjson")
    assert imported.json() == {"created": 11, "updated": 0}, imported.content
    return int(dataset.json()["id"])


def calibrate(t: Tenant, evaluator_id: int, dataset_id: int, timeout: float = 60) -> dict[str, Any]:
    base = project_url(t, f"evaluators/{evaluator_id}/calibrations/")
    started = t.client("team_admin").post(base, {"dataset": dataset_id, "concurrency": 4}, format="json")
    assert started.status_code == 202, started.content
    assert started.json()["total"] == 10  # the unlabelled item is not judged
    detail = f"{base}{started.json()['id']}/"
    until(lambda: t.client("viewer").get(detail).json()["status"] in ("succeeded", "partial", "failed"),
          timeout, 0.2)
    return t.client("viewer").get(detail).json()


def test_calibration_reports_a_constant_judge_as_no_better_than_the_baseline(stack: Stack, acme: Tenant) -> None:
    judge_route(acme, "judge-yes", litellm_params={"mock_response": '{"reasoning": "looks right", "score": true}'})
    judge_route(acme, "judge-no", litellm_params={"mock_response": '{"reasoning": "looks wrong", "score": false}'})
    evaluator = acme.client("team_admin").post(project_url(acme, "evaluators/"), {
        "name": "correct", "judge_route": "judge-yes", "score_type": "boolean",
        "prompt_template": "Is the answer right?\nQuestion: {{input}}\nAnswer: {{output}}"}, format="json")
    assert evaluator.status_code == 201, evaluator.content
    ev, dataset_id = evaluator.json()["id"], labelled_dataset(acme)

    always_true = calibrate(acme, ev, dataset_id)
    assert (always_true["status"], always_true["scored"], always_true["failed"]) == ("succeeded", 10, 0), always_true
    report = always_true["report"]
    assert report["n"] == 10 and report["labels"] == ["true", "false"]
    assert report["confusion_matrix"] == [[7, 0], [3, 0]]
    assert report["accuracy"] == pytest.approx(0.7) and report["kappa"] == pytest.approx(0.0)
    assert report["baseline"] == {"label": "true", "accuracy": pytest.approx(0.7), "kappa": 0.0}
    assert always_true["distribution"] == {"true": 10} and always_true["evaluator_version"] == 1

    # the judge route changes: a new version, which always says false
    acme.client("team_admin").patch(project_url(acme, f"evaluators/{ev}/"), {"judge_route": "judge-no"},
                                    format="json")
    always_false = calibrate(acme, ev, dataset_id)
    assert always_false["evaluator_version"] == 2
    report = always_false["report"]
    assert report["confusion_matrix"] == [[0, 7], [0, 3]]
    assert report["accuracy"] == pytest.approx(0.3) and report["kappa"] == pytest.approx(0.0)
    assert report["baseline"]["accuracy"] == pytest.approx(0.7)  # worse than always answering "true"

    # every judge call went through the gateway with the project's service key: budgeted and visible
    service = VirtualKey.objects.get(project=acme.project, kind=KeyKind.SERVICE)
    until(lambda: UsageRecord.objects.filter(key=service).count() == 20, 10)
    assert EvalScore.objects.filter(evaluator_version__evaluator_id=ev, status="scored").count() == 20


def test_calibration_of_a_judge_that_reads_the_answer(stack: Stack, acme: Tenant) -> None:
    """Through the proxy to a provider stand-in that judges by the answer it is shown: kappa above 0."""
    llm = LLMStandin(lambda body: json.dumps({"reasoning": "read it", "score": "ANSWER-OK" in
                                              body["messages"][-1]["content"]})).start()
    try:
        credential = acme.client("admin").post(acme.url("credentials/"), {
            "name": "sim", "provider": "openai_compatible", "settings": {"api_base": f"{llm.url}/v1"}},
            format="json")
        assert credential.status_code == 201, credential.content
        judge_route(acme, "judge-reads", credential=credential.json()["id"], model="judge-sim")
        evaluator = acme.client("team_admin").post(project_url(acme, "evaluators/"), {
            "name": "correct", "judge_route": "judge-reads", "score_type": "boolean",
            "prompt_template": "Is the answer right?\nQuestion: {{input}}\nAnswer: {{output}}"}, format="json")
        assert evaluator.status_code == 201, evaluator.content
        run = calibrate(acme, evaluator.json()["id"], labelled_dataset(acme))
        assert run["status"] == "succeeded", run
        report = run["report"]
        # expected x judged: true [5, 2], false [1, 2]; po 0.7, pe (7*6 + 3*4) / 100 = 0.54
        assert report["confusion_matrix"] == [[5, 2], [1, 2]] and report["accuracy"] == pytest.approx(0.7)
        assert report["kappa"] == pytest.approx(0.16 / 0.46)
        assert report["baseline"] == {"label": "true", "accuracy": pytest.approx(0.7), "kappa": 0.0}
        assert len(llm.requests) == 10
    finally:
        llm.stop()
