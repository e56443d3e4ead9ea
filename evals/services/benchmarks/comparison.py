"""A benchmark run against the previous succeeded or partial run of the same
benchmark: the changes per route present in both, and the regressions by
the `RULES` below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evals.models import BenchmarkRun, RunStatus

EPSILON = 1e-9

#: The regression rule, per route present in both runs: (measure, what counts as a regression).
RULES = {
    "pass_rate": "down by more than 5 percentage points",
    "error_rate": "up by more than 5 percentage points",
    "evaluators.<name>.mean": "numeric scores: down by more than 5% of the score's range (max - min)",
    "evaluators.<name>.pass_rate": "boolean and categorical scores: down by more than 5 percentage points",
    "metrics.<name>.pass_rate": "down by more than 5 percentage points",
    "latency_p95_ms": "up by more than 20% and by more than 100 ms",
    "cost_per_item": "up by more than 20%",
}
POINTS = 0.05
RANGE_SHARE = 0.05
RISE = 0.20
LATENCY_FLOOR_MS = 100.0


def _dig(stats: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = stats
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


@dataclass(frozen=True)
class Measure:
    keys: tuple[str, ...]  # where it is in a route's stats
    rule: str  # its key in RULES
    kind: str  # drop | rise | rise_ratio | rise_ratio_floor
    threshold: float

    @property
    def label(self) -> str:
        return ".".join(self.keys)


def measures(evaluators: list[dict[str, Any]], metric_names: list[str]) -> list[Measure]:
    """What is compared, and how much of a change is a regression (`RULES`)."""
    out = [Measure(("pass_rate",), "pass_rate", "drop", POINTS), Measure(("error_rate",), "error_rate", "rise", POINTS)]
    for e in evaluators:
        if e["score_type"] == "numeric" and e.get("min_value") is not None and e.get("max_value") is not None:
            out.append(Measure(("evaluators", e["name"], "mean"), "evaluators.<name>.mean", "drop",
                               RANGE_SHARE * (e["max_value"] - e["min_value"])))
        else:
            out.append(Measure(("evaluators", e["name"], "pass_rate"), "evaluators.<name>.pass_rate", "drop", POINTS))
    out += [Measure(("metrics", name, "pass_rate"), "metrics.<name>.pass_rate", "drop", POINTS)
            for name in metric_names]
    out += [Measure(("latency_p95_ms",), "latency_p95_ms", "rise_ratio_floor", RISE),
            Measure(("cost_per_item",), "cost_per_item", "rise_ratio", RISE)]
    return out


def regressed(measure: Measure, before: float, after: float) -> bool:
    kind, threshold = measure.kind, measure.threshold
    if kind == "drop":
        return before - after > threshold + EPSILON
    if kind == "rise":
        return after - before > threshold + EPSILON
    rises = after > before * (1 + threshold) + EPSILON and after - before > EPSILON
    return rises and (kind == "rise_ratio" or after - before > LATENCY_FLOOR_MS)


def compare(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Changes per route and measure between two matrices, with the regressions per `RULES`.
    Routes, evaluators and metrics are matched by name; only those in both runs are compared."""
    before_routes = {r["route"]: r for r in previous.get("routes", []) if "items" in r}
    before_evaluators = {e["name"] for e in previous.get("evaluators", [])}
    before_metrics = {x["name"] for x in previous.get("metrics", [])}
    evaluators = [e for e in current.get("evaluators", []) if e["name"] in before_evaluators]
    metric_names = [x["name"] for x in current.get("metrics", []) if x["name"] in before_metrics]
    routes, regressions = [], []
    for now in current.get("routes", []):
        then = before_routes.get(now["route"])
        if then is None:
            continue
        changes = []
        for measure in measures(evaluators, metric_names):
            before, after = _dig(then, measure.keys), _dig(now, measure.keys)
            if before is None or after is None:
                continue
            flagged = regressed(measure, before, after)
            changes.append({"measure": measure.label, "previous": before, "current": after,
                            "change": round(after - before, 9), "regression": flagged})
            if flagged:
                regressions.append({"route": now["route"], "measure": measure.label, "previous": before,
                                    "current": after, "rule": f"{measure.rule}: {RULES[measure.rule]}"})
        routes.append({"route": now["route"], "changes": changes})
    return {"routes": routes, "regressions": regressions,
            "new_routes": [r["route"] for r in current.get("routes", []) if r["route"] not in before_routes],
            "rules": RULES}


def compare_with_previous(run: BenchmarkRun) -> dict[str, Any]:
    previous = (BenchmarkRun.objects.filter(benchmark_id=run.benchmark_id, pk__lt=run.pk,
                                            status__in=[RunStatus.SUCCEEDED, RunStatus.PARTIAL])
                .order_by("-pk").first())
    if previous is None:
        return {"previous_run": None, "routes": [], "regressions": [], "new_routes": [], "rules": RULES}
    return {"previous_run": previous.pk, **compare(previous.matrix, run.matrix)}
