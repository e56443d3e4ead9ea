"""The results matrix of a benchmark run: per route, pass rate, errors, the
evaluators' means and pass rates, the metrics' pass rates, cost per answered
item and p50/p95 latency."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from evals.models import BenchmarkResult


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(hits: int, of: int) -> float | None:
    return round(hits / of, 6) if of else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def route_stats(rows: list[BenchmarkResult], evaluators: list[dict[str, Any]],
                metrics: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if not r.error]
    decided = [r for r in rows if r.passed is not None]
    stats: dict[str, Any] = {
        "items": len(rows), "completed": len(answered), "errors": len(rows) - len(answered),
        "error_rate": rate(len(rows) - len(answered), len(rows)),
        "passed": sum(1 for r in rows if r.passed), "undecided": len(rows) - len(decided),
        "pass_rate": rate(sum(1 for r in decided if r.passed), len(decided)),
        "evaluators": {}, "metrics": {}}
    for e in evaluators:
        scores = [r.scores.get("evaluators", {}).get(e["name"]) for r in answered]
        good = [s for s in scores if s and "error" not in s]
        values = [s["value"] for s in good if s.get("value") is not None]
        verdicts = [s["passed"] for s in good if s.get("passed") is not None]
        stats["evaluators"][e["name"]] = {
            "mean": _round(sum(values) / len(values), 6) if values else None, "scored": len(good),
            "failed": sum(1 for s in scores if s and "error" in s),
            "pass_rate": rate(sum(1 for v in verdicts if v), len(verdicts))}
    for spec in metrics:
        verdicts = [r.scores.get("metrics", {}).get(spec["name"]) for r in answered]
        applicable = [v for v in verdicts if v is not None]
        stats["metrics"][spec["name"]] = {"pass_rate": rate(sum(1 for v in applicable if v), len(applicable)),
                                          "passed": sum(1 for v in applicable if v), "applicable": len(applicable)}
    cost = sum((r.cost for r in rows), Decimal(0))
    judge_cost = sum(Decimal(str(s.get("cost") or 0)) for r in rows
                     for s in r.scores.get("evaluators", {}).values())
    latencies = [r.latency_ms for r in answered if r.latency_ms is not None]
    stats |= {"cost": float(cost), "cost_per_item": float(cost / len(answered)) if answered else None,
              "judge_cost": float(judge_cost),
              "latency_p50_ms": _round(percentile(latencies, 50), 1),
              "latency_p95_ms": _round(percentile(latencies, 95), 1)}
    return stats


def build_matrix(setup: dict[str, Any], results: Iterable[BenchmarkResult]) -> dict[str, Any]:
    """Per route of the setup: pass rate, errors, mean score and pass rate per
    evaluator, pass rate per metric, cost per answered item, p50/p95 latency."""
    by_route: dict[int, list[BenchmarkResult]] = {}
    for result in results:
        by_route.setdefault(result.route_id, []).append(result)
    routes = [{"route": r["route"], "route_id": r["route_id"],
               **route_stats(by_route.get(r["route_id"], []), setup["evaluators"], setup["metrics"])}
              for r in setup["routes"]]
    total = sum(Decimal(str(r["cost"])) + Decimal(str(r["judge_cost"])) for r in routes)
    return {**setup, "routes": routes, "total_cost": float(total)}
