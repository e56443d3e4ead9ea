"""A benchmark run's results as CSV, streamed: one row per item x route."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from evals.models import BenchmarkResult, BenchmarkRun


class _Echo:
    def write(self, value: str) -> str:
        return value


def _text(value: Any) -> str:
    """A text cell; one that a spreadsheet would read as a formula is quoted."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def results_csv(run: BenchmarkRun) -> Iterator[str]:
    """One row per item x route: the answer, its scores, pass, latency, cost, error, trace id."""
    evaluators = [e["name"] for e in run.matrix.get("evaluators", [])]
    metric_names = [x["name"] for x in run.matrix.get("metrics", [])]
    writer = csv.writer(_Echo())
    yield writer.writerow(["item", "route", "input", "expected_output", "output", "passed", "latency_ms", "cost",
                           "error", "trace_id", *[c for n in evaluators for c in (f"evaluator:{n}",
                                                                                   f"evaluator:{n}:passed")],
                           *[f"metric:{n}" for n in metric_names]])
    rows = (BenchmarkResult.objects.filter(run=run).select_related("item", "route")
            .order_by("item_id", "route__name"))
    for r in rows.iterator(chunk_size=500):
        scores = r.scores.get("evaluators", {})
        cells = []
        for name in evaluators:
            s = scores.get(name) or {}
            cells += [_text(s.get("label") or s.get("value")) if "error" not in s else "error",
                      _flag(s.get("passed"))]
        yield writer.writerow([
            _text(r.item.external_id), r.route.name, _text(r.item.input), _text(r.item.expected_output),
            _text(r.output), _flag(r.passed), "" if r.latency_ms is None else f"{r.latency_ms:.1f}",
            f"{r.cost:f}", _text(r.error), r.trace_id, *cells,
            *[_flag(r.scores.get("metrics", {}).get(n)) for n in metric_names]])
