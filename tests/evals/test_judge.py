"""The judge: prompt rendering, parsing and checking answers, one repair."""

from __future__ import annotations

from typing import Any

import pytest

from evals.gateway_client import Completion
from evals.judge import JudgeParseError, ScoreSpec, judge, parse, render
from evals.templates import TEMPLATES

NUMERIC = ScoreSpec("numeric", 1, 5, pass_threshold=4)
BOOLEAN = ScoreSpec("boolean", pass_labels=("false",))
CATEGORICAL = ScoreSpec("categorical", labels=("none", "minor", "major"), pass_labels=("none",))


class Scripted:
    """A judge that answers from a script, one answer per call."""

    def __init__(self, *answers: str) -> None:
        self.answers, self.calls = list(answers), []

    def chat(self, model: str, messages: list[dict[str, Any]], *, purpose: str = "judge",
             **params: Any) -> Completion:
        self.calls.append({"model": model, "messages": messages, **params})
        return Completion(self.answers.pop(0), None, 0.001, 5.0, "t" * 32, 10, 5)


def test_render_fills_variables_from_the_mapping_and_dotted_paths() -> None:
    source = {"input": {"q": "2+2?"}, "output": "4", "metadata": {"context": "math", "n": 3}}
    text = render("Q {{input}} A {{ output }} C {{context}} N {{metadata.n}} X {{expected_output}}",
                  {"context": "metadata.context"}, source)
    assert '"q": "2+2?"' in text and "A 4" in text and "C math" in text and "N 3" in text and "X (none)" in text


@pytest.mark.parametrize("answer,spec,expected", [
    ('{"reasoning": "fine", "score": 4}', NUMERIC, (4.0, "", "fine")),
    ('Here you go:\n```json\n{"reasoning": "ok", "score": "5"}\n```', NUMERIC, (5.0, "", "ok")),
    ('{"reasoning": "rude", "score": true}', BOOLEAN, (1.0, "true", "rude")),
    ('{"reasoning": "x", "score": "False"}', BOOLEAN, (0.0, "false", "x")),
    ('{"reasoning": "made up", "score": "Major"}', CATEGORICAL, (2.0, "major", "made up")),
])
def test_parse_accepts_answers_that_fit_the_score(answer: str, spec: ScoreSpec, expected: tuple) -> None:
    assert parse(answer, spec) == expected


@pytest.mark.parametrize("answer,spec,why", [
    ("I think it is good", NUMERIC, "not a JSON object"),
    ('{"reasoning": "x"}', NUMERIC, 'no "score"'),
    ('{"score": 9}', NUMERIC, "outside the range"),
    ('{"score": true}', NUMERIC, "not a number"),
    ('{"score": "maybe"}', BOOLEAN, "not true or false"),
    ('{"score": "huge"}', CATEGORICAL, "not one of none, minor, major"),
])
def test_parse_says_why_an_answer_cannot_be_used(answer: str, spec: ScoreSpec, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse(answer, spec)


def test_a_bad_answer_is_repaired_once() -> None:
    client = Scripted("Score: four", '{"reasoning": "clear", "score": 4}')
    result = judge(client, route="judge", prompt="grade", spec=NUMERIC)
    assert (result.value, result.comment, result.repaired) == (4.0, "clear", True)
    assert result.cost == pytest.approx(0.002)
    repair_prompt = client.calls[1]["messages"][-1]["content"]
    assert "could not be used: the answer is not a JSON object" in repair_prompt
    assert client.calls[0]["response_format"]["json_schema"]["schema"]["properties"]["score"] == {
        "type": "number", "minimum": 1, "maximum": 5}


def test_an_answer_that_stays_bad_fails_with_its_cost() -> None:
    client = Scripted("nope", "still nope")
    with pytest.raises(JudgeParseError) as exc:
        judge(client, route="judge", prompt="grade", spec=NUMERIC)
    assert exc.value.cost == pytest.approx(0.002) and len(client.calls) == 2


def test_tool_call_mode_asks_for_a_forced_function_call() -> None:
    client = Scripted('{"reasoning": "r", "score": false}')
    judge(client, route="judge", prompt="p", spec=BOOLEAN, output_mode="tool_call")
    call = client.calls[0]
    assert call["tool_choice"]["function"]["name"] == "submit_score"
    assert call["tools"][0]["function"]["parameters"]["properties"]["score"] == {"type": "boolean"}


def test_pass_rules() -> None:
    assert NUMERIC.passed(4.0, "") is True and NUMERIC.passed(3.5, "") is False
    assert BOOLEAN.passed(0.0, "false") is True and BOOLEAN.passed(1.0, "true") is False
    assert CATEGORICAL.passed(0.0, "none") is True and CATEGORICAL.passed(1.0, "minor") is False


def test_every_built_in_template_renders_and_has_a_schema() -> None:
    assert set(TEMPLATES) == {"helpfulness", "correctness", "hallucination", "relevance", "toxicity", "conciseness"}
    for key, t in TEMPLATES.items():
        spec = ScoreSpec(t["score_type"], t.get("min_value"), t.get("max_value"), tuple(t.get("labels", ())))
        text = render(t["prompt_template"], t.get("variables", {}), {"input": "q", "output": "a",
                                                                       "metadata": {"context": "c"}})
        assert "{{" not in text and '"score"' in text, key
        assert spec.json_schema()["required"] == ["reasoning", "score"]
