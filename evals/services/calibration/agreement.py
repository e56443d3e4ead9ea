"""How well a judge agrees with the truth: labels normalized as the judge's
answers are compared, accuracy and Cohen's kappa next to the majority
baseline, the confusion matrix, and the report of (expected, judged) pairs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from evals.judge import ScoreSpec
from evals.models import EvalScore, Evaluator, EvaluatorVersion

MAX_DISAGREEMENTS = 50


def normalize(value: Any, spec: ScoreSpec) -> str:
    """A label as the judge's answers are compared: numbers as `f"{x:g}"`,
    booleans as "true"/"false", categories as the evaluator spells them."""
    if spec.score_type == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("not a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{str(value)[:50]!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        if (spec.min_value is not None and number < spec.min_value) or \
                (spec.max_value is not None and number > spec.max_value):
            raise ValueError(f"{number:g} is outside the range {spec.min_value}..{spec.max_value}")
        return f"{number:g}"
    if spec.score_type == "boolean":
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise ValueError(f"{str(value)[:50]!r} is not true or false")
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    label = next((x for x in spec.labels if text is not None and x.lower() == text.lower()), None)
    if label is None:
        raise ValueError(f"{str(value)[:50]!r} is not one of {', '.join(spec.labels)}")
    return label


def judged_label(score: EvalScore, score_type: str) -> str:
    if score_type == "numeric":
        return f"{score.value:g}" if score.value is not None else ""
    return score.label


def label_order(spec: ScoreSpec) -> list[str]:
    if spec.score_type == "categorical":
        return list(spec.labels)
    if spec.score_type == "boolean":
        return ["true", "false"]
    lo, hi = spec.min_value, spec.max_value
    if lo is not None and hi is not None and lo.is_integer() and hi.is_integer() and 0 < hi - lo <= 10:
        return [f"{v:g}" for v in range(int(lo), int(hi) + 1)]
    return []


def current_spec(evaluator: Evaluator) -> tuple[EvaluatorVersion, ScoreSpec]:
    version = evaluator.current
    if version is None:
        raise ValidationError({"evaluator": "The evaluator has no version."})
    return version, ScoreSpec.of(version)


def _sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def agreement(pairs: Sequence[tuple[str, str]], order: Sequence[str] = ()) -> dict[str, Any]:
    """Accuracy and Cohen's kappa of (expected, judged) label pairs, next to the
    baseline that always answers the most common expected label (kappa 0 by
    definition), and the confusion matrix (rows: expected, columns: judged).
    Kappa is None when chance agreement is 1 (everything is one same label)."""
    n = len(pairs)
    seen = {label for pair in pairs for label in pair}
    labels = list(order) + sorted(seen - set(order), key=_sort_key)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for expected, judged in pairs:
        matrix[index[expected]][index[judged]] += 1
    if n == 0:
        return {"n": 0, "labels": labels, "accuracy": None, "kappa": None, "confusion_matrix": matrix,
                "baseline": {"label": None, "accuracy": None, "kappa": None}}
    agree = sum(matrix[i][i] for i in range(len(labels)))
    rows = [sum(row) for row in matrix]
    cols = [sum(matrix[r][c] for r in range(len(labels))) for c in range(len(labels))]
    chance = sum(r * c for r, c in zip(rows, cols, strict=True))  # expected agreement, times n^2
    kappa = None if chance == n * n else (agree * n - chance) / (n * n - chance)
    majority = max(range(len(labels)), key=lambda i: (rows[i], -i))
    return {"n": n, "labels": labels, "accuracy": agree / n, "kappa": kappa, "confusion_matrix": matrix,
            "baseline": {"label": labels[majority], "accuracy": rows[majority] / n, "kappa": 0.0}}


@dataclass
class Pair:
    subject: str
    expected: str
    judged: str
    comment: str
    version: int


def report(pairs: list[Pair], order: Sequence[str], unscored: int) -> dict[str, Any]:
    result = agreement([(p.expected, p.judged) for p in pairs], order)
    result["unscored"] = unscored
    result["versions"] = {str(v): c for v, c in sorted(Counter(p.version for p in pairs).items())}
    result["disagreements"] = [{"subject": p.subject, "expected": p.expected, "judged": p.judged,
                                "comment": p.comment[:500]} for p in pairs if p.expected != p.judged
                               ][:MAX_DISAGREEMENTS]
    return result
