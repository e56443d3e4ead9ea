"""Judge calibration: the agreement math, human labels (import, report), and
calibrations on a dataset's expected labels, with an OpenAI-compatible
stand-in in the gateway's place (the real gateway runs in tests/e2e)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from evals.judge import ScoreSpec
from evals.models import DatasetItem, EvalRun, EvalScore, Evaluator, HumanLabel
from evals.services.calibration import agreement, normalize
from evals.tasks_datasets import execute_calibration
from portal import services
from portal.access import system_actor
from tests.factories import Tenant
from tests.llm_standin import LLMStandin

pytestmark = pytest.mark.django_db
BOOLEAN = ScoreSpec("boolean")


def url(t: Tenant, path: str) -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


# The math --------------------------------------------------------------


def pairs(*counts: tuple[str, str, int]) -> list[tuple[str, str]]:
    return [(expected, judged) for expected, judged, n in counts for _ in range(n)]


def test_accuracy_and_kappa_against_hand_computed_values() -> None:
    # the textbook table: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4
    result = agreement(pairs(("yes", "yes", 20), ("yes", "no", 5), ("no", "yes", 10), ("no", "no", 15)),
                       ["yes", "no"])
    assert result["n"] == 50 and result["accuracy"] == pytest.approx(0.7) and result["kappa"] == pytest.approx(0.4)
    assert result["confusion_matrix"] == [[20, 5], [10, 15]] and result["labels"] == ["yes", "no"]
    assert result["baseline"] == {"label": "yes", "accuracy": pytest.approx(0.5), "kappa": 0.0}
    # 6 a / 4 b expected; judged [[5, 1], [2, 2]]: po 0.7, pe (6*7 + 4*3) / 100 = 0.54, kappa 0.16 / 0.46
    result = agreement(pairs(("a", "a", 5), ("a", "b", 1), ("b", "a", 2), ("b", "b", 2)))
    assert result["kappa"] == pytest.approx(0.16 / 0.46) and result["baseline"]["accuracy"] == pytest.approx(0.6)
    # always the same answer: kappa 0, whatever the accuracy; perfect: 1; always wrong on a balanced set: -1
    assert agreement(pairs(("a", "a", 7), ("b", "a", 3)))["kappa"] == pytest.approx(0.0)
    assert agreement(pairs(("a", "a", 3), ("b", "b", 2)))["kappa"] == pytest.approx(1.0)
    assert agreement(pairs(("a", "b", 5), ("b", "a", 5)))["kappa"] == pytest.approx(-1.0)


def test_degenerate_and_empty_cases() -> None:
    # chance agreement 1 (one label everywhere): kappa is undefined, accuracy and the baseline are 1
    same = agreement(pairs(("true", "true", 4)), ["true", "false"])
    assert same["accuracy"] == 1.0 and same["kappa"] is None
    assert same["baseline"] == {"label": "true", "accuracy": 1.0, "kappa": 0.0}
    assert same["confusion_matrix"] == [[4, 0], [0, 0]]
    empty = agreement([], ["true", "false"])
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["kappa"] is None
    assert empty["baseline"] == {"label": None, "accuracy": None, "kappa": None}
    # ties for the majority go to the first label in order; labels outside the order sort numerically
    tie = agreement(pairs(("10", "10", 1), ("9", "9", 1), ("2", "2", 1)), ["1", "2"])
    assert tie["labels"] == ["1", "2", "9", "10"] and tie["baseline"]["label"] == "2"


def test_labels_are_normalized_like_the_judges_answers() -> None:
    numeric = ScoreSpec("numeric", 1, 5)
    assert [normalize(v, numeric) for v in (4, "4.0", 2.5, " 3 ")] == ["4", "4", "2.5", "3"]
    for bad in ("9", "four", True, None, "nan"):
        with pytest.raises(ValueError):
            normalize(bad, numeric)
    assert [normalize(v, BOOLEAN) for v in (True, "FALSE", " true ")] == ["true", "false", "true"]
    with pytest.raises(ValueError, match="not true or false"):
        normalize("yes", BOOLEAN)
    categorical = ScoreSpec("categorical", labels=("none", "minor", "major"))
    assert normalize("Major", categorical) == "major"
    with pytest.raises(ValueError, match="not one of none, minor, major"):
        normalize("huge", categorical)


# Human labels ----------------------------------------------------------


def make_evaluator(t: Tenant, body: dict[str, Any] | None = None) -> dict[str, Any]:
    body = body or {"name": "helpfulness", "template": "helpfulness"}
    response = t.client("team_admin").post(url(t, "evaluators/"), {"judge_route": "chat", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def judged(evaluator_id: int, version: int, trace_id: str, value: float | None, *, minutes_ago: int,
           status: str = "scored", label: str = "", comment: str = "") -> None:
    """A judgement from an earlier evaluation run."""
    ev = Evaluator.objects.get(pk=evaluator_id)
    v = ev.versions.get(version=version)
    run = EvalRun.objects.create(project=ev.project, evaluator_version=v, status="succeeded",
                                 window_end=timezone.now())
    EvalScore.objects.create(project=ev.project, evaluator_version=v, trace_id=trace_id, run=run, status=status,
                             value=value, label=label, comment=comment,
                             scored_at=timezone.now() - dt.timedelta(minutes=minutes_ago))


def import_labels(t: Tenant, evaluator_id: int, body: str, content_type: str = "text/csv",
                  role: str = "team_admin") -> Any:
    return t.client(role).post(url(t, f"evaluators/{evaluator_id}/labels/import/"), data=body.encode(),
                               content_type=content_type)


def test_human_labels_import_and_the_judges_agreement_with_them(acme: Tenant) -> None:
    ev = make_evaluator(acme)  # numeric 1..5
    acme.client("team_admin").patch(url(acme, f"evaluators/{ev['id']}/"), {"prompt_template": "Rate {{output}}"},
                                    format="json")  # version 2
    judged(ev["id"], 1, "t1", 4, minutes_ago=60)
    judged(ev["id"], 2, "t1", 5, minutes_ago=5, comment="great")  # the latest judgement of t1
    judged(ev["id"], 2, "t2", 2, minutes_ago=5)
    judged(ev["id"], 1, "t3", 4, minutes_ago=60, comment="fine")
    judged(ev["id"], 2, "t4", None, minutes_ago=5, status="failed")  # not a usable judgement
    response = import_labels(acme, ev["id"], "trace_id,label\nt1,5\nt2,2.0\nt3,3\nt4,4\nt5,1\n")
    assert response.status_code == 200 and response.json() == {"created": 5, "updated": 0}
    assert sorted(HumanLabel.objects.values_list("trace_id", "label")) == [
        ("t1", "5"), ("t2", "2"), ("t3", "3"), ("t4", "4"), ("t5", "1")]
    report = acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/labels/report/")).json()
    # pairs (5, 5), (2, 2), (3, 4): po 2/3; chance (1*1 for "2" + 1*1 for "5") / 9; kappa (6 - 2) / (9 - 2)
    assert report["n"] == 3 and report["unscored"] == 2 and report["versions"] == {"1": 1, "2": 2}
    assert report["accuracy"] == pytest.approx(2 / 3) and report["kappa"] == pytest.approx(4 / 7)
    assert report["labels"] == ["1", "2", "3", "4", "5"]
    assert report["baseline"] == {"label": "2", "accuracy": pytest.approx(1 / 3), "kappa": 0.0}
    assert report["confusion_matrix"][2] == [0, 0, 0, 1, 0]  # expected 3, judged 4
    assert report["disagreements"] == [{"subject": "t3", "expected": "3", "judged": "4", "comment": "fine"}]
    only_v1 = acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/labels/report/"), {"version": 1}).json()
    assert (only_v1["n"], only_v1["unscored"], only_v1["accuracy"]) == (2, 3, 0.0)
    assert only_v1["kappa"] == pytest.approx(0.0) and only_v1["baseline"]["label"] == "3"
    # importing again replaces labels instead of adding them
    again = import_labels(acme, ev["id"], json.dumps([{"trace_id": "t3", "label": 4}, {"trace_id": "t6",
                                                                                       "label": "2"}]),
                          content_type="application/json")
    assert again.json() == {"created": 1, "updated": 1}
    assert acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/labels/report/")).json()["accuracy"] == 1.0


def test_bad_label_rows_are_reported_by_line_and_nothing_is_imported(acme: Tenant, globex: Tenant) -> None:
    ev = make_evaluator(acme)
    foreign = DatasetItem.objects.create(
        dataset=globex.project.datasets.create(name="theirs"), external_id="x", input="q")
    body = ("trace_id,item_id,label\n"
            "t1,,4\n"  # 2: fine
            "t2,,9\n"  # 3: out of range
            ",,3\n"  # 4: neither id
            f",{foreign.pk},3\n"  # 5: another tenant's item
            "t1,,5\n"  # 6: t1 again
            "t3,,\n")  # 7: no label
    response = import_labels(acme, ev["id"], body)
    assert response.status_code == 400
    assert response.json()["file"] == [
        "line 3: label 9 is outside the range 1.0..5.0.",
        "line 4: give either trace_id or item_id.",
        f"line 5: no item '{foreign.pk}' in this project's datasets.",
        "line 6: trace_id 't1' is already on line 2.",
        "line 7: label is missing.",
    ]
    jsonl = '{"trace_id": "t1", "label": 4}\n{"trace_id": "t2", "label": 4, "note": "x"}\n'
    assert import_labels(acme, ev["id"], jsonl, "application/x-ndjson").json() == {
        "file": ["line 2: unknown field 'note'."]}
    assert not HumanLabel.objects.exists()


def test_labels_tenancy_and_single_labels(acme: Tenant, globex: Tenant) -> None:
    ev = make_evaluator(acme)
    labels = url(acme, f"evaluators/{ev['id']}/labels/")
    created = acme.client("team_admin").post(labels, {"trace_id": "t1", "label": "4"}, format="json")
    assert created.status_code == 201 and created.json()["label"] == "4"
    replaced = acme.client("team_admin").post(labels, {"trace_id": "t1", "label": "2.0"}, format="json")
    assert replaced.status_code == 200 and replaced.json()["label"] == "2" and HumanLabel.objects.count() == 1
    bad = acme.client("team_admin").post(labels, {"trace_id": "t2", "label": "great"}, format="json")
    assert bad.status_code == 400 and "not a number" in bad.json()["label"][0]
    assert acme.client("team_admin").post(labels, {"label": "3"}, format="json").status_code == 400
    assert acme.client("viewer").get(labels).json()["count"] == 1
    for role in ("viewer", "member"):
        assert acme.client(role).post(labels, {"trace_id": "t3", "label": "3"}, format="json").status_code == 403
        assert import_labels(acme, ev["id"], "trace_id,label\nt3,3\n", role=role).status_code == 403
        assert acme.client(role).delete(f"{labels}{created.json()['id']}/").status_code == 403
    assert globex.client("owner").get(labels).status_code == 404
    assert globex.client("owner").get(f"{labels}report/").status_code == 404
    other = services.project_create(actor=system_actor(acme.org, "tests"), data={"name": "other", "team": acme.team})
    assert acme.client("owner").get(acme.url(f"projects/{other.pk}/evaluators/{ev['id']}/labels/")).status_code == 404
    assert acme.client("team_admin").delete(f"{labels}{created.json()['id']}/").status_code == 204
    assert not HumanLabel.objects.exists()


# Calibration on a dataset ----------------------------------------------


@pytest.fixture
def judge_llm(settings: Any) -> Iterator[LLMStandin]:
    """In the gateway's place: answers true when the answer it judges says ANSWER-OK."""
    mode = {"prose": False}

    def answer(body: dict[str, Any]) -> str:
        if mode["prose"]:
            return "I am not sure."
        prompt = body["messages"][-1]["content"]
        return json.dumps({"reasoning": "checked", "score": "ANSWER-OK" in prompt})

    llm = LLMStandin(answer).start()
    llm.mode = mode  # type: ignore[attr-defined]
    settings.GATEWAY_INTERNAL_URL = llm.url
    yield llm
    llm.stop()


CALIBRATION_ITEMS = [  # (expected label, the answer's marker, how many)
    ("true", "ANSWER-OK", 5), ("true", "ANSWER-WRONG", 2), ("false", "ANSWER-OK", 1), ("false", "ANSWER-WRONG", 2)]


def calibration_dataset(t: Tenant) -> int:
    dataset = t.client("team_admin").post(url(t, "datasets/"), {"name": "judge-check"}, format="json").json()
    lines = [{"id": f"{expected}-{marker}-{i}", "input": f"question {i}", "expected_output": expected == "true",
              "metadata": {"output": f"{marker} answer {i}", "expected_output": "REFERENCE"}}
             for expected, marker, n in CALIBRATION_ITEMS for i in range(n)]
    lines.append({"id": "unlabelled", "input": "q", "metadata": {"output": "ANSWER-OK"}})
    response = t.client("team_admin").post(url(t, f"datasets/{dataset['id']}/import/"),
                                           data="\n".join(json.dumps(x) for x in lines).encode(),
                                           content_type="application/x-ndjson")
    assert response.json() == {"created": 11, "updated": 0}
    return dataset["id"]


def boolean_evaluator(t: Tenant) -> dict[str, Any]:
    return make_evaluator(t, {"name": "correct", "score_type": "boolean",
                              "prompt_template": "Question: {{input}}\nAnswer: {{output}}\nReference: {{expected_output}}"})


def start(t: Tenant, evaluator_id: int, dataset_id: int, callbacks: Any) -> dict[str, Any]:
    with callbacks() as queued:
        response = t.client("team_admin").post(url(t, f"evaluators/{evaluator_id}/calibrations/"),
                                               {"dataset": dataset_id, "concurrency": 3}, format="json")
    assert response.status_code == 202, response.content
    assert len(queued) == 1  # the task is sent once the transaction commits
    execute_calibration.apply(args=(response.json()["id"], 3))  # what the worker does
    return response.json()


def test_a_calibration_judges_each_labelled_item_and_reports_agreement(
        acme: Tenant, judge_llm: LLMStandin, django_capture_on_commit_callbacks: Any) -> None:
    ev, dataset_id = boolean_evaluator(acme), calibration_dataset(acme)
    queued = start(acme, ev["id"], dataset_id, django_capture_on_commit_callbacks)
    assert queued["status"] == "queued" and queued["total"] == 10 and queued["dataset"] == dataset_id
    detail = url(acme, f"evaluators/{ev['id']}/calibrations/{queued['id']}/")
    run = acme.client("viewer").get(detail).json()
    assert (run["status"], run["scored"], run["failed"], run["progress"]) == ("succeeded", 10, 0, 1.0)
    report = run["report"]
    # expected x judged: true [5, 2], false [1, 2]: po 0.7, pe (7*6 + 3*4) / 100 = 0.54
    assert report["labels"] == ["true", "false"] and report["confusion_matrix"] == [[5, 2], [1, 2]]
    assert report["n"] == 10 and report["accuracy"] == pytest.approx(0.7)
    assert report["kappa"] == pytest.approx(0.16 / 0.46)
    assert report["baseline"] == {"label": "true", "accuracy": pytest.approx(0.7), "kappa": 0.0}
    assert len(report["disagreements"]) == 3
    # the judge saw the item's input, metadata.output and the reference answer; never the expected label
    prompts = [r["messages"][-1]["content"] for r in judge_llm.requests]
    assert len(prompts) == 10 and all("Reference: REFERENCE" in p for p in prompts)
    assert sum("ANSWER-OK" in p for p in prompts) == 6
    # correcting an expected label corrects the report, without judging again
    wrong = DatasetItem.objects.get(dataset_id=dataset_id, external_id="false-ANSWER-OK-0")
    acme.client("team_admin").patch(url(acme, f"datasets/{dataset_id}/items/{wrong.pk}/"),
                                    {"expected_output": "true"}, format="json")
    fixed = acme.client("viewer").get(detail).json()["report"]
    assert fixed["confusion_matrix"] == [[6, 2], [0, 2]] and fixed["accuracy"] == pytest.approx(0.8)
    assert len(judge_llm.requests) == 10
    # a human label of an item is compared with the judge's latest judgement of that item
    acme.client("team_admin").post(url(acme, f"evaluators/{ev['id']}/labels/"), {"item": wrong.pk, "label": "true"},
                                   format="json")
    by_people = acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/labels/report/")).json()
    assert (by_people["n"], by_people["accuracy"]) == (1, 1.0)
    listed = acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/calibrations/")).json()
    assert [(c["id"], c["dataset"]) for c in listed["results"]] == [(queued["id"], dataset_id)]
    calibrations = url(acme, f"evaluators/{ev['id']}/calibrations/")
    assert acme.client("viewer").get(calibrations, {"dataset": dataset_id + 1}).json()["count"] == 0
    assert acme.client("viewer").get(calibrations, {"dataset": dataset_id}).json()["count"] == 1
    # digits that are not ASCII (Schemathesis found "²") or beyond the id range are a 400, not a 500
    for bad in ("²", "١", "9" * 20, "-1", "x"):
        answer = acme.client("viewer").get(calibrations, {"dataset": bad})
        assert (answer.status_code, answer.json()) == (400, {"dataset": ["A dataset id."]}), bad
        answer = acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/labels/report/"), {"version": bad})
        assert (answer.status_code, answer.json()) == (400, {"version": ["A version number."]}), bad
    assert all(re.fullmatch(r"dataset:\d+/item:\d+/run:\d+", s.trace_id) for s in EvalScore.objects.all())


def test_judge_answers_that_cannot_be_used_count_as_unscored(
        acme: Tenant, judge_llm: LLMStandin, django_capture_on_commit_callbacks: Any) -> None:
    ev, dataset_id = boolean_evaluator(acme), calibration_dataset(acme)
    judge_llm.mode["prose"] = True  # type: ignore[attr-defined]
    queued = start(acme, ev["id"], dataset_id, django_capture_on_commit_callbacks)
    run = acme.client("viewer").get(url(acme, f"evaluators/{ev['id']}/calibrations/{queued['id']}/")).json()
    assert (run["status"], run["scored"], run["failed"]) == ("succeeded", 0, 10)
    assert run["report"]["n"] == 0 and run["report"]["unscored"] == 10 and run["report"]["accuracy"] is None
    assert len(judge_llm.requests) == 20  # each: an answer and one repair


def test_a_calibration_needs_usable_expected_labels(acme: Tenant, globex: Tenant) -> None:
    ev = boolean_evaluator(acme)
    calibrations = url(acme, f"evaluators/{ev['id']}/calibrations/")
    dataset = acme.client("team_admin").post(url(acme, "datasets/"), {"name": "d"}, format="json").json()
    items = url(acme, f"datasets/{dataset['id']}/items/")
    acme.client("team_admin").post(items, {"input": "q", "metadata": {"output": "a"}}, format="json")
    empty = acme.client("team_admin").post(calibrations, {"dataset": dataset["id"]}, format="json")
    assert empty.status_code == 400 and "No item has an expected label" in empty.json()["dataset"][0]
    maybe = acme.client("team_admin").post(items, {"external_id": "m", "input": "q", "expected_output": "maybe"},
                                           format="json").json()
    bad = acme.client("team_admin").post(calibrations, {"dataset": dataset["id"]}, format="json")
    assert bad.json() == {"dataset": [f"item {maybe['id']} (m): the expected label 'maybe' is not true or false."]}
    theirs = globex.project.datasets.create(name="theirs")
    assert acme.client("team_admin").post(calibrations, {"dataset": theirs.pk}, format="json").status_code == 400
    assert acme.client("member").post(calibrations, {"dataset": dataset["id"]}, format="json").status_code == 403
    assert globex.client("owner").get(calibrations).status_code == 404
    assert not EvalRun.objects.exists()
