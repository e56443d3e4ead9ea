"""Dataset calibrations: the judge on every item of a dataset that has an
expected label (`expected_output`), on a worker, on the run lifecycle
(`evals/lifecycle.py`), and the report of its judgements against the labels
as they are when it is read.

A calibration is an `EvalRun` of the evaluator's current version with
neither schedule nor window; each judgement is an `EvalScore` of that run
whose subject (`trace_id`) is `dataset:<dataset id>/item:<item id>/run:<run id>`,
created (claimed) when the calibration starts. The subject names the run, so
every calibration keeps its own judgements.

The judge sees an item as a trace: `input` is the item's input, `output` is
`metadata.output` (the answer to judge), `expected_output` is
`metadata.expected_output` (a reference answer, for correctness-style
prompts), and `metadata` is the item's metadata. The item's own
`expected_output` is the label and is never shown to the judge."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum

from evals.judge import ScoreSpec
from evals.models import Dataset, DatasetItem, EvalRun, EvalScore, Evaluator, RunStatus, ScoreStatus
from evals.services.calibration.agreement import Pair, current_spec, judged_label, label_order, normalize, report
from evals.services.datasets import MAX_ERRORS
from evals.services.evaluators import check_capacity
from evals.services.judging import JudgeExecution
from portal import audit
from portal.access import Actor

SUBJECT_PREFIX = "dataset:"
SUBJECT = re.compile(r"^dataset:(\d+)/item:(\d+)/run:(\d+)$")
MAX_CALIBRATION_ITEMS = 5000
MAX_CONCURRENCY = 16


def subject(dataset_id: int, item_id: int, run_id: int) -> str:
    return f"dataset:{dataset_id}/item:{item_id}/run:{run_id}"


def parse_subject(value: str) -> tuple[int, int, int] | None:
    """(dataset id, item id, run id) of a calibration judgement's subject."""
    found = SUBJECT.match(value or "")
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def expected_labels(dataset: Dataset, spec: ScoreSpec) -> tuple[list[int], int, list[str]]:
    """(ids of the items with a usable expected label, how many have none, what is wrong with the others)."""
    usable, unlabelled, problems = [], 0, []
    for item_id, external_id, expected in dataset.items.order_by("id").values_list("pk", "external_id",
                                                                                    "expected_output"):
        if expected is None:
            unlabelled += 1
            continue
        try:
            normalize(expected, spec)
        except ValueError as exc:
            problems.append(f"item {item_id} ({external_id}): the expected label {exc}.")
            continue
        usable.append(item_id)
    return usable, unlabelled, problems


@transaction.atomic
def calibration_create(*, actor: Actor, evaluator: Evaluator, dataset: Dataset, concurrency: int = 4) -> EvalRun:
    """Judge every item of the dataset that has an expected label, on a worker."""
    actor.require_team_manager(evaluator.project.team_id)
    if dataset.project_id != evaluator.project_id:
        raise ValidationError({"dataset": "Choose a dataset of this project."})
    version, spec = current_spec(evaluator)
    usable, _, problems = expected_labels(dataset, spec)
    if problems:
        more = len(problems) - MAX_ERRORS
        raise ValidationError({"dataset": problems[:MAX_ERRORS] + ([f"... and {more} more."] if more > 0 else [])})
    if not usable:
        raise ValidationError({"dataset": "No item has an expected label (expected_output) to calibrate against."})
    if len(usable) > MAX_CALIBRATION_ITEMS:
        raise ValidationError({"dataset": f"At most {MAX_CALIBRATION_ITEMS} labelled items per calibration."})
    check_capacity(evaluator.project)
    run = EvalRun.objects.create(project_id=evaluator.project_id, evaluator_version=version, status=RunStatus.QUEUED,
                                 total=len(usable))
    EvalScore.objects.bulk_create([
        EvalScore(project_id=evaluator.project_id, evaluator_version=version, run=run,
                  trace_id=subject(dataset.pk, item_id, run.pk)) for item_id in usable], batch_size=1000)
    audit.record(actor, "evaluator.calibrate", evaluator, after={
        "run": run.pk, "dataset": dataset.pk, "version": version.version, "items": len(usable)})
    from evals.tasks_datasets import execute_calibration

    transaction.on_commit(lambda: execute_calibration.delay(run.pk, concurrency))
    return run


def item_source(item: DatasetItem) -> dict[str, Any]:
    """What a judge prompt can refer to, from a dataset item (see the module docstring)."""
    meta = item.metadata if isinstance(item.metadata, dict) else {}
    return {"input": item.input, "output": meta.get("output"), "expected_output": meta.get("expected_output"),
            "metadata": meta, "item_id": item.external_id, "trace_id": item.source_trace_id or None}


class Calibration(JudgeExecution):
    """The units are the calibration's claimed rows (those not judged yet,
    when a retried task resumes), each judged on the pool."""

    name = "calibration"
    time_reason = "the calibration ran out of time"

    def __init__(self, run: EvalRun, concurrency: int = 4) -> None:
        self.requested = concurrency
        super().__init__(run)

    def concurrency(self) -> int:
        return max(1, min(self.requested, MAX_CONCURRENCY))

    def prepare(self) -> None:
        """Counters from the rows, so that a retried task goes on where it was."""
        run = self.run
        done = EvalScore.objects.filter(run=run).exclude(status=ScoreStatus.CLAIMED)
        run.scored = done.filter(status=ScoreStatus.SCORED).count()
        run.failed = done.filter(status=ScoreStatus.FAILED).count()
        run.processed = run.scored + run.failed
        run.judge_cost = done.aggregate(c=Sum("judge_cost"))["c"] or Decimal(0)

    def units(self) -> Any:
        rows = list(EvalScore.objects.filter(run=self.run, status=ScoreStatus.CLAIMED).order_by("id"))
        items = DatasetItem.objects.in_bulk([parsed[1] for row in rows if (parsed := parse_subject(row.trace_id))])
        for row in rows:
            parsed = parse_subject(row.trace_id)
            yield row, items.get(parsed[1]) if parsed else None

    def take(self, unit: tuple[EvalScore, DatasetItem | None]) -> Any:
        row, item = unit
        if item is None:
            self.failed(row, "the item was deleted")
            self.run.processed += 1
            return None
        return self.judging(row, item_source(item))

    def release(self) -> None:
        """What was not judged stays in the report as unscored."""
        EvalScore.objects.filter(run=self.run, status=ScoreStatus.CLAIMED).update(
            status=ScoreStatus.FAILED, error=f"not judged: {self.run.stop_reason}"[:500])


def calibration_execute(run_id: int, concurrency: int = 4) -> EvalRun | None:
    """Execute a queued calibration (the `evals` worker); None when it already finished."""
    return Calibration.handle(run_id, concurrency=concurrency)


def calibration_dataset_id(subject_value: str | None) -> int | None:
    parsed = parse_subject(subject_value or "")
    return parsed[0] if parsed else None


def calibration_report(run: EvalRun) -> dict[str, Any]:
    """The run's judgements against the items' expected labels as they are now
    (deleted items and items that lost their label drop out)."""
    version = run.evaluator_version
    spec = ScoreSpec.of(version)
    scores = list(EvalScore.objects.filter(run=run).only("trace_id", "status", "value", "label", "comment"))
    item_ids = [parsed[1] for s in scores if (parsed := parse_subject(s.trace_id))]
    expected = dict(DatasetItem.objects.filter(pk__in=item_ids).values_list("pk", "expected_output"))
    pairs, unscored = [], 0
    for score in scores:
        parsed = parse_subject(score.trace_id)
        if parsed is None or expected.get(parsed[1]) is None:
            continue
        try:
            label = normalize(expected[parsed[1]], spec)
        except ValueError:
            continue
        if score.status != ScoreStatus.SCORED:
            unscored += 1
            continue
        pairs.append(Pair(f"item:{parsed[1]}", label, judged_label(score, version.score_type), score.comment,
                          version.version))
    return report(pairs, label_order(spec), unscored)
