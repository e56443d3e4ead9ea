"""Judge calibration: how well an evaluator's judge agrees with people.

Two sources of the truth:
- human labels (`HumanLabel`), imported for traces or dataset items and
  compared with the judge's latest scored judgement of each (over the
  evaluator's versions, or of one version);
- a dataset's expected labels: each item's `expected_output` is the label the
  judge should give. A calibration judges every labelled item (a Celery task,
  concurrently, through the gateway with the project's service key).

What it stores, without a model of its own: a dataset calibration is an
`EvalRun` of the evaluator's current version with neither schedule nor time
window (status, progress, cost as for any run), and each judgement is an
`EvalScore` of that run whose subject (`trace_id`) is
`dataset:<dataset id>/item:<item id>/run:<run id>`. The subject names the run,
so every calibration keeps its own judgements. Reports are computed when
read, from those scores and the labels as they are then: correcting an
expected label corrects the report without judging again.

The judge sees an item as a trace: `input` is the item's input, `output` is
`metadata.output` (the answer to judge), `expected_output` is
`metadata.expected_output` (a reference answer, for correctness-style
prompts), and `metadata` is the item's metadata. The item's own
`expected_output` is the label and is never shown to the judge."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from evals.concurrency import Bounded
from evals.gateway_client import GatewayCallError, GatewayClient
from evals.judge import JudgeParseError, Judgment, ScoreSpec, judge, render
from evals.models import (
    Dataset,
    DatasetItem,
    EvalRun,
    EvalScore,
    Evaluator,
    EvaluatorVersion,
    HumanLabel,
    RunStatus,
    ScoreStatus,
)
from evals.service_keys import service_key
from evals.services import runs
from evals.services.datasets import (
    MAX_ERRORS,
    Errors,
    check_line_count,
    check_row_count,
    check_upload_size,
    decode,
    duplicate_ids,
    line_errors,
    parse_csv,
    parse_jsonl,
    text_problem,
)
from evals.services.evaluators import check_capacity
from portal import audit
from portal.access import Actor

log = logging.getLogger(__name__)
SUBJECT_PREFIX = "dataset:"
SUBJECT = re.compile(r"^dataset:(\d+)/item:(\d+)/run:(\d+)$")
MAX_CALIBRATION_ITEMS = 5000
MAX_DISAGREEMENTS = 50
PROGRESS_EVERY = 5
LABEL_COLUMNS = frozenset({"trace_id", "item_id", "label"})


def subject(dataset_id: int, item_id: int, run_id: int) -> str:
    return f"dataset:{dataset_id}/item:{item_id}/run:{run_id}"


def parse_subject(value: str) -> tuple[int, int, int] | None:
    """(dataset id, item id, run id) of a calibration judgement's subject."""
    found = SUBJECT.match(value or "")
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


# Labels ----------------------------------------------------------------


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


# Agreement -------------------------------------------------------------


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


# Human labels ----------------------------------------------------------


@dataclass
class LabelRow:
    label: str
    trace_id: str = ""
    item: DatasetItem | None = None


def label_records(content: bytes, fmt: str) -> tuple[list[tuple[int, dict[str, Any]]], Errors]:
    check_upload_size(content)
    text = decode(content)
    if fmt == "csv":
        cells, errors = parse_csv(text, columns=LABEL_COLUMNS, required=["label"])
        return [(line, {k: v for k, v in row.items() if v.strip()}) for line, row in cells], errors
    if text.lstrip().startswith("["):  # a JSON array: its elements are numbered like lines
        try:
            values = json.loads(text)
        except ValueError as exc:
            return [], [(1, f"not valid JSON ({exc})")]
        if not isinstance(values, list):
            return [], [(1, "not a JSON array")]
        records = [(i, v) for i, v in enumerate(values, start=1) if isinstance(v, dict)]
        return records, [(i, "not a JSON object") for i, v in enumerate(values, start=1) if not isinstance(v, dict)]
    check_line_count(text, "labels")
    return parse_jsonl(text)


def parse_labels(evaluator: Evaluator, content: bytes, fmt: str) -> list[LabelRow]:
    """Rows of `trace_id,label` or `item_id,label` (an item of the project's
    datasets, by its id), or a ValidationError naming every bad line."""
    _, spec = current_spec(evaluator)
    records, errors = label_records(content, fmt)
    check_row_count(len(records) + len(errors), "labels")
    item_ids = {str(r.get("item_id")).strip() for _, r in records if r.get("item_id") is not None}
    items = {str(i.pk): i for i in DatasetItem.objects.filter(
        dataset__project_id=evaluator.project_id, pk__in=[i for i in item_ids if i.isascii() and i.isdigit() and len(i) < 19])}
    rows: list[tuple[int, LabelRow]] = []
    for line, record in records:
        problems = [f"unknown field {k!r}" for k in sorted(set(record) - LABEL_COLUMNS)][:5]
        trace_id, item_id = record.get("trace_id"), record.get("item_id")
        if (trace_id is None) == (item_id is None):
            problems.append("give either trace_id or item_id")
        elif trace_id is not None and (not isinstance(trace_id, str) or not 0 < len(trace_id.strip()) <= 100
                                       or text_problem(trace_id)):
            problems.append("trace_id must be text of 1 to 100 characters")
        elif item_id is not None and str(item_id).strip() not in items:
            problems.append(f"no item {str(item_id)[:30]!r} in this project's datasets")
        try:
            label = normalize(record.get("label"), spec) if record.get("label") is not None else None
            if label is None:
                problems.append("label is missing")
        except ValueError as exc:
            problems.append(f"label {exc}")
        if problems:
            errors.append((line, "; ".join(problems)))
            continue
        assert label is not None
        rows.append((line, LabelRow(label, (trace_id or "").strip(),
                                    items.get(str(item_id).strip()) if item_id is not None else None)))
    errors += duplicate_ids([(line, r.trace_id or None) for line, r in rows], "trace_id")
    errors += duplicate_ids([(line, str(r.item.pk) if r.item else None) for line, r in rows], "item_id")
    if errors:
        raise ValidationError({"file": line_errors(errors)})
    if not rows:
        raise ValidationError({"file": ["The file has no labels."]})
    return [row for _, row in rows]


def _upsert_labels(evaluator: Evaluator, rows: list[LabelRow]) -> tuple[int, int]:
    """(created, updated). Inside a transaction, with the evaluator locked."""
    Evaluator.objects.select_for_update().filter(pk=evaluator.pk).first()
    by_trace = {x.trace_id: x for x in HumanLabel.objects.filter(
        evaluator=evaluator, trace_id__in=[r.trace_id for r in rows if r.trace_id])}
    by_item = {x.dataset_item_id: x for x in HumanLabel.objects.filter(
        evaluator=evaluator, dataset_item_id__in=[r.item.pk for r in rows if r.item])}
    new, changed = [], []
    for row in rows:
        existing = by_trace.get(row.trace_id) if row.trace_id else by_item.get(row.item.pk if row.item else None)
        if existing is None:
            new.append(HumanLabel(project_id=evaluator.project_id, evaluator=evaluator, trace_id=row.trace_id,
                                  dataset_item=row.item, label=row.label))
        elif existing.label != row.label:
            existing.label = row.label
            changed.append(existing)
    HumanLabel.objects.bulk_create(new, batch_size=1000)
    HumanLabel.objects.bulk_update(changed, ["label"], batch_size=1000)
    return len(new), len(rows) - len(new)


@transaction.atomic
def labels_import(*, actor: Actor, evaluator: Evaluator, content: bytes, fmt: str) -> tuple[int, int]:
    """Human labels from a CSV or JSON file; a trace or item labelled again gets the new label."""
    actor.require_team_manager(evaluator.project.team_id)
    rows = parse_labels(evaluator, content, fmt)
    created, updated = _upsert_labels(evaluator, rows)
    audit.record(actor, "evaluator.labels_import", evaluator, after={"created": created, "updated": updated})
    return created, updated


@transaction.atomic
def label_save(*, actor: Actor, evaluator: Evaluator, trace_id: str = "", item: DatasetItem | None = None,
               label: Any) -> tuple[HumanLabel, bool]:
    """One human label (created, or the label of that trace or item replaced)."""
    actor.require_team_manager(evaluator.project.team_id)
    _, spec = current_spec(evaluator)
    if bool(trace_id) == (item is not None):
        raise ValidationError({"trace_id": "Give either trace_id or item."})
    if item is not None and item.dataset.project_id != evaluator.project_id:
        raise ValidationError({"item": "Choose an item of this project's datasets."})
    try:
        normalized = normalize(label, spec)
    except ValueError as exc:
        raise ValidationError({"label": f"The label {exc}."}) from None
    created, _ = _upsert_labels(evaluator, [LabelRow(normalized, trace_id, item)])
    lookup = {"trace_id": trace_id} if trace_id else {"dataset_item": item}
    saved = HumanLabel.objects.get(evaluator=evaluator, **lookup)
    audit.record(actor, "evaluator.label_save", evaluator, after={"label": saved.label, "trace_id": trace_id,
                                                                  "item": item.pk if item else None})
    return saved, bool(created)


@transaction.atomic
def label_delete(*, actor: Actor, label: HumanLabel) -> None:
    actor.require_team_manager(label.evaluator.project.team_id)
    audit.record(actor, "evaluator.label_delete", label.evaluator,
                 before={"label": label.label, "trace_id": label.trace_id, "item": label.dataset_item_id})
    label.delete()


def _latest(scores: Any) -> dict[tuple[str, str], EvalScore]:
    """The latest judgement per subject: ("trace", trace id) or ("item", item id)."""
    latest: dict[tuple[str, str], EvalScore] = {}
    for score in scores:
        parsed = parse_subject(score.trace_id)
        key = ("item", str(parsed[1])) if parsed else ("trace", score.trace_id)
        held = latest.get(key)
        if held is None or (score.scored_at or score.claimed_at, score.pk) > (held.scored_at or held.claimed_at,
                                                                               held.pk):
            latest[key] = score
    return latest


def labels_report(*, evaluator: Evaluator, version: int | None = None) -> dict[str, Any]:
    """The judge against the human labels: each trace's latest scored
    judgement by the evaluator (any version, or `version`); each item's latest
    judgement in a dataset calibration."""
    _, spec = current_spec(evaluator)
    labels = list(HumanLabel.objects.filter(evaluator=evaluator).order_by("id"))
    scores = (EvalScore.objects.filter(evaluator_version__evaluator=evaluator, status=ScoreStatus.SCORED)
              .select_related("evaluator_version").only(
                  "trace_id", "value", "label", "comment", "scored_at", "claimed_at", "evaluator_version__version",
                  "evaluator_version__score_type"))
    if version is not None:
        scores = scores.filter(evaluator_version__version=version)
    trace_ids = [x.trace_id for x in labels if x.trace_id]
    latest = _latest(scores.filter(trace_id__in=trace_ids)) if trace_ids else {}
    if any(x.dataset_item_id for x in labels):
        latest |= _latest(scores.filter(trace_id__startswith=SUBJECT_PREFIX))
    pairs, unscored = [], 0
    for human in labels:
        key = ("trace", human.trace_id) if human.trace_id else ("item", str(human.dataset_item_id))
        score = latest.get(key)
        if score is None:
            unscored += 1
            continue
        version_row = score.evaluator_version
        pairs.append(Pair(human.trace_id or f"item:{human.dataset_item_id}", human.label,
                          judged_label(score, version_row.score_type), score.comment, version_row.version))
    return report(pairs, label_order(spec), unscored)


# Dataset calibration ---------------------------------------------------


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
def calibration_start(*, actor: Actor, evaluator: Evaluator, dataset: Dataset, concurrency: int = 4) -> EvalRun:
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
    from evals.tasks_datasets import calibrate

    transaction.on_commit(lambda: calibrate.delay(run.pk, concurrency))
    return run


def item_source(item: DatasetItem) -> dict[str, Any]:
    """What a judge prompt can refer to, from a dataset item (see the module docstring)."""
    meta = item.metadata if isinstance(item.metadata, dict) else {}
    return {"input": item.input, "output": meta.get("output"), "expected_output": meta.get("expected_output"),
            "metadata": meta, "item_id": item.external_id, "trace_id": item.source_trace_id or None}


class Calibrator:
    """Judges a calibration's claimed items on a pool of `concurrency` threads
    (only HTTP to the gateway); the main thread writes the results."""

    def __init__(self, run: EvalRun, gateway: GatewayClient, concurrency: int) -> None:
        self.run, self.gateway, self.concurrency = run, gateway, max(1, min(concurrency, 16))
        self.version = run.evaluator_version
        self.spec = ScoreSpec.of(self.version)
        self.judging: Bounded[Judgment, EvalScore] = Bounded(self.concurrency, self.finish, "calibrate")
        self.stopped = ""

    def judge_item(self, item: DatasetItem) -> Judgment:
        prompt = render(self.version.prompt_template, self.version.variables, item_source(item))
        return judge(self.gateway, route=self.version.judge_route.name, prompt=prompt, spec=self.spec,
                     output_mode=self.version.output_mode)

    def fail(self, row: EvalScore, error: str, cost: float = 0.0) -> None:
        row.status, row.error, row.judge_cost = ScoreStatus.FAILED, error[:500], Decimal(str(cost))
        row.save(update_fields=["status", "error", "judge_cost"])
        self.run.failed += 1
        self.run.judge_cost += Decimal(str(cost))

    def record(self, row: EvalScore, future: Future[Judgment]) -> None:
        try:
            result = future.result()
        except JudgeParseError as exc:
            self.fail(row, str(exc), exc.cost)
            return
        except GatewayCallError as exc:
            if exc.permanent:  # a budget or a refused route: the next items would fail the same way
                self.stopped = self.stopped or f"the gateway refused the judge call: {exc}"[:300]
                return  # left claimed: marked "not judged" when the run ends
            self.fail(row, f"the judge call failed: {exc}")
            return
        row.status, row.value, row.label, row.comment = ScoreStatus.SCORED, result.value, result.label, result.comment
        row.judge_cost, row.latency_ms, row.scored_at = Decimal(str(result.cost)), result.latency_ms, timezone.now()
        row.save(update_fields=["status", "value", "label", "comment", "judge_cost", "latency_ms", "scored_at"])
        self.run.judge_cost += Decimal(str(result.cost))
        self.run.scored += 1

    def finish(self, row: EvalScore, future: Future[Judgment]) -> None:
        self.record(row, future)
        self.run.processed += 1
        if self.run.processed % PROGRESS_EVERY == 0:
            self.run.save(update_fields=["processed", "scored", "failed", "judge_cost"])

    def execute(self) -> None:
        rows = list(EvalScore.objects.filter(run=self.run, status=ScoreStatus.CLAIMED).order_by("id"))
        wanted = [parsed[1] for row in rows if (parsed := parse_subject(row.trace_id))]
        items = DatasetItem.objects.in_bulk(wanted)
        with self.judging:  # leaving it lands what is in flight, even when the run stops
            for row in rows:
                if self.stopped:
                    break
                parsed = parse_subject(row.trace_id)
                item = items.get(parsed[1]) if parsed else None
                if item is None:
                    self.fail(row, "the item was deleted")
                    self.run.processed += 1
                    continue
                self.judging.submit(row, self.judge_item, item)


def resume_counts(run: EvalRun) -> None:
    """Counters from the rows, so that a retried task goes on where it was."""
    done = EvalScore.objects.filter(run=run).exclude(status=ScoreStatus.CLAIMED)
    run.scored = done.filter(status=ScoreStatus.SCORED).count()
    run.failed = done.filter(status=ScoreStatus.FAILED).count()
    run.processed = run.scored + run.failed
    run.judge_cost = done.aggregate(c=Sum("judge_cost"))["c"] or Decimal(0)


def finish(run: EvalRun, stop_reason: str, started: float) -> EvalRun:
    if stop_reason:
        run.stop_reason = stop_reason[:300]
        run.status = RunStatus.PARTIAL if run.processed else RunStatus.FAILED
        run.error = "" if run.processed else stop_reason[:1000]
    else:
        run.status = RunStatus.SUCCEEDED
    EvalScore.objects.filter(run=run, status=ScoreStatus.CLAIMED).update(
        status=ScoreStatus.FAILED, error=f"not judged: {stop_reason}"[:500])
    runs.summarize(run)
    run.finished_at = timezone.now()
    run.duration_ms = int((time.monotonic() - started) * 1000)
    run.save()
    return run


def execute_calibration(run_id: int, concurrency: int = 4) -> EvalRun | None:
    run = runs.start(run_id)
    if run is None:
        return None
    started = time.monotonic()
    resume_counts(run)
    calibrator = Calibrator(run, GatewayClient(service_key(run.project)), concurrency)
    calibrator.execute()
    return finish(run, calibrator.stopped, started)


def calibration_abort(run_id: int, reason: str) -> None:
    """End a calibration that cannot go on (its task ran out of time): what was judged stays."""
    run = EvalRun.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
    if run is not None:
        resume_counts(run)
        finish(run, reason, time.monotonic())


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
