"""What the two kinds of run that judge `EvalScore` rows share (evaluation
runs of traces, calibrations of dataset items): the judge call on the pool,
and the one way its outcome is saved on the row; and the score's
configuration in Langfuse (benchmarks write scores too)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, ClassVar

from django.db.models import Avg
from django.utils import timezone

from evals.gateway_client import GatewayCallError, GatewayClient
from evals.judge import JudgeParseError, Judgment, ScoreSpec, judge, render
from evals.langfuse_client import LangfuseClient
from evals.lifecycle import Execution
from evals.models import EvalRun, EvalScore, EvaluatorVersion, ScoreStatus
from evals.service_keys import service_key

LANGFUSE_TYPES = {"numeric": "NUMERIC", "boolean": "BOOLEAN", "categorical": "CATEGORICAL"}
PROGRESS_EVERY = 5


def ensure_score_config(client: LangfuseClient, version: EvaluatorVersion) -> str | None:
    """The Langfuse score configuration of the evaluator (created if missing); its id."""
    spec: dict[str, Any] = {"description": version.evaluator.description or f"LLM-as-judge, {version}"}
    if version.score_type == "numeric":
        spec |= {"minValue": version.min_value, "maxValue": version.max_value}
    elif version.score_type == "categorical":
        spec |= {"categories": [{"label": label, "value": i} for i, label in enumerate(version.labels)]}
    config = client.score_config(version.evaluator.name, LANGFUSE_TYPES[version.score_type], **spec)
    return config.get("id")


class JudgeExecution(Execution[Any, EvalScore, Judgment]):
    """An `EvalRun` whose units are judged `EvalScore` rows. Subclasses say
    what the judge sees of a unit and what a failed call means for the row."""

    model: ClassVar[type[EvalRun]] = EvalRun
    related = ("project", "evaluator_version__evaluator", "evaluator_version__judge_route", "schedule")

    def __init__(self, run: EvalRun) -> None:
        self.version = run.evaluator_version
        self.spec = ScoreSpec.of(self.version)
        self._gateway: GatewayClient | None = None
        super().__init__(run)

    @property
    def gateway(self) -> GatewayClient:
        """Through the gateway with the project's service key (made on first use, in the main thread)."""
        if self._gateway is None:
            self._gateway = GatewayClient(service_key(self.run.project))
        return self._gateway

    def judging(self, row: EvalScore, source: dict[str, Any]) -> tuple[EvalScore, Callable[..., Judgment],
                                                                         tuple[Any, ...]]:
        """The pool's work for one row: the judge on `source` (what its prompt may refer to)."""
        return row, self.judge_source, (self.gateway, source)

    def judge_source(self, gateway: GatewayClient, source: dict[str, Any]) -> Judgment:
        prompt = render(self.version.prompt_template, self.version.variables, source)
        return judge(gateway, route=self.version.judge_route.name, prompt=prompt, spec=self.spec,
                     output_mode=self.version.output_mode)

    def record(self, row: EvalScore, future: Future[Judgment]) -> None:
        try:
            result = future.result()
        except JudgeParseError as exc:  # the judge answered, but not in a usable form: a verdict on the row
            self.failed(row, str(exc), exc.cost)
            return
        except GatewayCallError as exc:
            if exc.permanent:  # a budget or a refused route: the next calls would fail the same way
                self.stop(f"the gateway refused the judge call: {exc}"[:300])
                return  # left claimed: `release` decides what becomes of it
            self.unanswered(row, exc)
            return
        row.status, row.value, row.label, row.comment = ScoreStatus.SCORED, result.value, result.label, result.comment
        row.judge_cost, row.latency_ms, row.scored_at = Decimal(str(result.cost)), result.latency_ms, timezone.now()
        row.error = ""
        row.save(update_fields=["status", "value", "label", "comment", "judge_cost", "latency_ms", "scored_at",
                                "error"])
        self.run.judge_cost += Decimal(str(result.cost))
        self.run.scored += 1
        self.scored(row)

    def failed(self, row: EvalScore, error: str, cost: float = 0.0) -> None:
        row.status, row.error, row.judge_cost = ScoreStatus.FAILED, error[:500], Decimal(str(cost))
        row.save(update_fields=["status", "error", "judge_cost"])
        self.run.failed += 1
        self.run.judge_cost += Decimal(str(cost))

    def unanswered(self, row: EvalScore, exc: GatewayCallError) -> None:
        """The judge call failed for a transient reason (the gateway's 5xx, a time-out)."""
        self.failed(row, f"the judge call failed: {exc}")

    def scored(self, row: EvalScore) -> None:
        """After a row is scored (an evaluation run writes it to Langfuse)."""

    def progress(self) -> None:
        if self.run.processed % PROGRESS_EVERY == 0:
            self.run.save(update_fields=["considered", "sampled", "scored", "already_scored", "failed", "processed",
                                         "total", "judge_cost"])

    def conclude(self) -> None:
        """Mean and distribution of the run's scores; its duration."""
        summarize(self.run)
        self.run.duration_ms = int(self.measure("seconds") * 1000)

    @classmethod
    def release_all(cls, run_ids: list[int]) -> None:
        EvalScore.objects.filter(run_id__in=run_ids, status=ScoreStatus.CLAIMED).delete()


def summarize(run: EvalRun) -> None:
    scores = EvalScore.objects.filter(run=run, status=ScoreStatus.SCORED)
    run.mean_score = scores.aggregate(m=Avg("value"))["m"]
    if run.evaluator_version.score_type == "numeric":
        counts = Counter(f"{v:g}" for v in scores.values_list("value", flat=True))
    else:
        counts = Counter(scores.values_list("label", flat=True))
    run.distribution = dict(sorted(counts.items()))
