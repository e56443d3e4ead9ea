"""Work a tenant hands to shared workers is bounded: a benchmark's regular
expressions cannot stall a worker, and uploads are bounded in size and rows
(a refused upload loses nothing already stored)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.conf import settings as django_settings

from evals import metrics
from evals.models import DatasetItem, HumanLabel
from tests.factories import Tenant, project_url

pytestmark = pytest.mark.django_db

CATASTROPHIC = [("(a+)+$", "a" * 50 + "b"), ("(x+x+)+y", "x" * 5000), ("(a|aa)+$", "a" * 5000 + "!"),
                ("^(([a-z])+.)+[A-Z]([a-z])+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")]


@pytest.mark.parametrize("pattern,answer", CATASTROPHIC, ids=[p for p, _ in CATASTROPHIC])
def test_a_catastrophic_pattern_finishes_fast(pattern: str, answer: str) -> None:
    """Before RE2, `(a+)+$` on 26 a's and a b took 12 s in Python's backtracking engine (50: never)."""
    checks = metrics.parse_specs([{"type": "regex", "pattern": pattern}, {"type": "regex", "name": "folded",
                                                                           "pattern": pattern, "ignore_case": True}])
    started = time.monotonic()
    assert metrics.evaluate(checks, answer, None) == {"regex": False, "folded": False}
    metrics.evaluate(checks, answer * 20, None)  # up to MAX_ANSWER_CHARS
    assert time.monotonic() - started < 0.5


def test_the_longest_answer_matches_in_linear_time() -> None:
    checks = metrics.parse_specs([{"type": "regex", "pattern": "(a*)*b"}])
    started = time.monotonic()
    assert metrics.evaluate(checks, "a" * 1_000_000, None) == {"regex": False}  # cut at MAX_ANSWER_CHARS
    assert time.monotonic() - started < 0.5


def test_patterns_still_match_as_users_expect() -> None:
    checks = metrics.parse_specs([{"type": "regex", "name": "answer", "pattern": r"^\s*answer:\s*(yes|no)\b"},
                                  {"type": "regex", "name": "any case", "pattern": "PARIS", "ignore_case": True}])
    assert metrics.evaluate(checks, "  answer: yes, Paris", None) == {"answer": True, "any case": True}
    assert metrics.evaluate(checks, "answer: maybe", None) == {"answer": False, "any case": False}


def benchmark_body(t: Tenant, pattern: str) -> dict[str, Any]:
    assert t.evals is None  # only the dataset is needed
    dataset = t.client("owner").post(project_url(t, "datasets/"), {"name": "acme-bounded"}, format="json").json()
    return {"name": "acme-regex", "dataset": dataset["id"], "routes": ["chat"],
            "metrics": [{"type": "regex", "pattern": pattern}]}


@pytest.mark.parametrize("pattern,reason", [
    (r"(a)\1", "does not compile: invalid escape sequence: \\1. Patterns run with RE2, which has no "
               "backreferences and no lookaround"),
    (r"yes(?=!)", "does not compile: invalid perl operator: (?=. Patterns run with RE2"),
    ("(unclosed", "does not compile: missing ): (unclosed."),
    ("a{1000}{1000}", "does not compile: "),
    ("a" * (metrics.MAX_PATTERN + 1), f"up to {metrics.MAX_PATTERN} characters"),
])
def test_a_pattern_that_cannot_be_run_safely_is_a_400_naming_the_field(acme: Tenant, pattern: str,
                                                                        reason: str) -> None:
    response = acme.client("owner").post(project_url(acme, "benchmarks/"), benchmark_body(acme, pattern),
                                         format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["metrics"], response.json()
    message = " ".join(response.json()["metrics"])
    assert "'pattern'" in message and reason in message, message


def test_the_upload_limits_are_settings_with_generous_defaults() -> None:
    assert django_settings.EVALS_MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    assert django_settings.EVALS_MAX_UPLOAD_ROWS == 50_000


def upload(t: Tenant, path: str, body: bytes, content_type: str = "application/x-ndjson") -> Any:
    return t.client("team_admin").post(project_url(t, path), data=body, content_type=content_type)


def lines(n: int, prefix: str = "row") -> bytes:
    return "\n".join(json.dumps({"id": f"{prefix}-{i}", "input": f"q{i}", "expected_output": True})
                     for i in range(n)).encode()


@pytest.fixture
def stored(acme: Tenant) -> tuple[int, int]:
    """A dataset with two items and an evaluator with one label, already stored."""
    owner = acme.client("owner")
    dataset = owner.post(project_url(acme, "datasets/"), {"name": "acme-kept"}, format="json").json()["id"]
    assert upload(acme, f"datasets/{dataset}/import/", lines(2, "kept")).status_code == 200
    evaluator = owner.post(project_url(acme, "evaluators/"), {"name": "acme-judge", "template": "correctness",
                                                             "judge_route": "chat"}, format="json").json()["id"]
    assert upload(acme, f"evaluators/{evaluator}/labels/import/", b"trace_id,label\nkept,1\n",
                  "text/csv").status_code == 200
    return dataset, evaluator


def assert_nothing_lost() -> None:
    assert sorted(DatasetItem.objects.values_list("external_id", flat=True)) == ["kept-0", "kept-1"]
    assert list(HumanLabel.objects.values_list("trace_id", "label")) == [("kept", "1")]


def test_an_oversize_upload_is_refused_with_the_limit(acme: Tenant, stored: tuple[int, int], settings: Any) -> None:
    dataset, evaluator = stored
    settings.EVALS_MAX_UPLOAD_BYTES = 2000
    big = lines(100)
    assert len(big) > 2000
    for path, body, content_type in ((f"datasets/{dataset}/import/", big, "application/x-ndjson"),
                                     (f"datasets/{dataset}/import/", b"input\n" + b"x\n" * 1500, "text/csv"),
                                     (f"evaluators/{evaluator}/labels/import/", b"trace_id,label\n" + b"t,1\n" * 600,
                                      "text/csv")):
        response = upload(acme, path, body, content_type)
        assert response.status_code == 413, (path, response.content)
        assert response.json() == {"detail": "The file is larger than 2000 bytes, the limit of an upload; "
                                             "nothing was imported."}
    settings.EVALS_MAX_UPLOAD_BYTES = 3 * 1024 * 1024
    multipart = acme.client("team_admin").post(project_url(acme, f"datasets/{dataset}/import/"), {
        "file": _named_file(b"x" * (3 * 1024 * 1024 + 70 * 1024), "items.jsonl")}, format="multipart")
    assert multipart.status_code == 413 and "larger than 3 MiB" in multipart.json()["detail"]
    assert_nothing_lost()


def test_an_upload_of_too_many_rows_is_refused_with_the_limit(acme: Tenant, stored: tuple[int, int],
                                                              settings: Any) -> None:
    dataset, evaluator = stored
    settings.EVALS_MAX_UPLOAD_ROWS = 50
    for path, body, content_type, what in (
            (f"datasets/{dataset}/import/", lines(51), "application/x-ndjson", "items"),
            (f"datasets/{dataset}/import/", b"input\n" + b"q\n" * 51, "text/csv", "items"),
            (f"evaluators/{evaluator}/labels/import/", b"trace_id,label\n" + b"t,1\n" * 51, "text/csv", "labels"),
            (f"evaluators/{evaluator}/labels/import/",
             json.dumps([{"trace_id": f"t{i}", "label": "1"} for i in range(51)]).encode(), "application/json",
             "labels")):
        response = upload(acme, path, body, content_type)
        assert response.status_code == 400, (path, response.content)
        assert response.json() == {"file": [f"The file has more than 50 {what}, the limit of an upload; "
                                            "nothing was imported."]}, path
    assert upload(acme, f"datasets/{dataset}/import/", lines(50)).status_code == 200  # the limit itself is fine
    assert DatasetItem.objects.count() == 52


def _named_file(content: bytes, name: str) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="application/octet-stream")
