"""Deterministic metrics of benchmarks: what passes, what fails, what does not apply, and which specs are refused."""

from __future__ import annotations

from typing import Any

import pytest

from evals.metrics import MetricSpecError, evaluate, parse_specs


def check(spec: dict[str, Any], answer: str, expected: Any) -> bool | None:
    metric = parse_specs([spec])[0]
    return evaluate([metric], answer, expected)[metric.name]


@pytest.mark.parametrize("answer,expected,result", [
    ("Paris", "Paris", True),
    ("  Paris\n", "Paris ", True),  # surrounding whitespace does not count
    ("paris", "Paris", False),
    ("Paris.", "Paris", False),
    ('{"answer": 42}', {"answer": 42}, True),
    ('{ "answer" : 42.0 }', {"answer": 42}, True),  # JSON reference: formatting and 42 vs 42.0 do not matter
    ('{"answer": "42"}', {"answer": 42}, False),
    ('{"ok": 1}', {"ok": True}, False),  # true is not 1
    ('["a", "b"]', ["a", "b"], True),
    ('The answer is {"answer": 42}', {"answer": 42}, False),
    ("42", 42, True),
    ("anything", None, None),  # no expected output: does not apply
])
def test_exact_match(answer: str, expected: Any, result: bool | None) -> None:
    assert check({"type": "exact_match"}, answer, expected) is result


def test_exact_match_may_ignore_case_also_inside_json() -> None:
    spec = {"type": "exact_match", "ignore_case": True}
    assert check(spec, "PARIS", "paris") is True
    assert check(spec, '{"city": "PARIS"}', {"city": "Paris"}) is True


@pytest.mark.parametrize("spec,answer,expected,result", [
    ({"type": "contains", "value": "42"}, "The answer is 42.", None, True),
    ({"type": "contains", "value": "forty"}, "The answer is 42.", "x", False),
    ({"type": "contains", "value": "ANSWER", "ignore_case": True}, "The answer is 42.", None, True),
    ({"type": "contains", "value": "ANSWER"}, "The answer is 42.", None, False),
    ({"type": "contains"}, "I think Paris, France.", "Paris", True),  # no value: the expected output
    ({"type": "contains"}, 'so {"answer":42} it is', {"answer": 42}, True),  # JSON reference, written compactly
    ({"type": "contains"}, "anything", None, None),
])
def test_contains(spec: dict[str, Any], answer: str, expected: Any, result: bool | None) -> None:
    assert check(spec, answer, expected) is result


@pytest.mark.parametrize("spec,answer,result", [
    ({"type": "regex", "pattern": r"\b\d{3}-\d{4}\b"}, "call 555-1234 now", True),
    ({"type": "regex", "pattern": r"^\d+$"}, "12a", False),
    ({"type": "regex", "pattern": "^yes", "ignore_case": True}, "Yes, it is", True),
    ({"type": "regex", "pattern": "^yes"}, "Yes, it is", False),
])
def test_regex_searches_the_answer(spec: dict[str, Any], answer: str, result: bool) -> None:
    assert check(spec, answer, "irrelevant") is result


@pytest.mark.parametrize("answer,result", [
    ('{"a": [1, 2]}', True), (" [1] \n", True), ("42", True), ("null", True),
    ("", False), ("{'a': 1}", False), ('```json\n{"a": 1}\n```', False), ('{"a": 1} trailing', False),
])
def test_json_valid_is_the_whole_answer(answer: str, result: bool) -> None:
    assert check({"type": "json_valid"}, answer, None) is result


def test_specs_are_normalized_with_names_defaulting_to_the_type() -> None:
    metrics = parse_specs([{"type": "exact_match"}, {"type": "contains", "value": "x", "name": "has x"},
                           {"type": "regex", "pattern": "a+", "ignore_case": False}])
    assert [m.spec() for m in metrics] == [
        {"name": "exact_match", "type": "exact_match"}, {"name": "has x", "type": "contains", "value": "x"},
        {"name": "regex", "type": "regex", "pattern": "a+"}]


@pytest.mark.parametrize("specs,message", [
    ("exact_match", "Expected a list of metric specs."),
    ([{"type": "bleu"}], "Metric 1: 'type' must be one of exact_match, contains, regex, json_valid."),
    (["exact_match"], "Metric 1: expected an object"),
    ([{"type": "regex", "pattern": "(unclosed"}], "Metric 1 (regex): 'pattern' does not compile: missing ): "
                                                  "(unclosed."),
    ([{"type": "regex"}], "Metric 1 (regex): 'pattern' must be a non-empty regular expression"),
    ([{"type": "regex", "pattern": "a" * 501}], "up to 500 characters"),
    ([{"type": "contains", "value": ""}], "Metric 1 (contains): 'value' must be a non-empty text"),
    ([{"type": "contains", "value": 42}], "'value' must be a non-empty text"),
    ([{"type": "json_valid", "ignore_case": True}], "Metric 1 (json_valid): unknown option(s) ignore_case."),
    ([{"type": "exact_match", "ignore_case": "yes"}], "'ignore_case' must be true or false."),
    ([{"type": "exact_match", "name": "a:b"}], "'name' must be 1-35 letters"),
    ([{"type": "contains", "value": "a"}, {"type": "contains", "value": "b"}],
     "Two metrics are named 'contains': give each a distinct 'name'."),
    ([{"type": "json_valid"}] * 21, "At most 20 metrics."),
])
def test_invalid_specs_say_what_is_wrong(specs: Any, message: str) -> None:
    with pytest.raises(MetricSpecError) as caught:
        parse_specs(specs)
    assert any(message in line for line in caught.value.messages), caught.value.messages


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(MetricSpecError) as caught:
        parse_specs([{"type": "regex", "pattern": "["}, {"type": "nope"}, {"type": "exact_match"}])
    assert len(caught.value.messages) == 2
    assert caught.value.messages[0].startswith("Metric 1 (regex)") and caught.value.messages[1].startswith("Metric 2")
