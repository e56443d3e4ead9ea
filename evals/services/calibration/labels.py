"""Human labels of traces and dataset items: imported from CSV or JSON, saved
and deleted one at a time, and the judge's agreement with them (each
subject's latest scored judgement)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from evals.models import DatasetItem, EvalScore, Evaluator, HumanLabel, ScoreStatus
from evals.services.calibration.agreement import Pair, current_spec, judged_label, label_order, normalize, report
from evals.services.calibration.calibrations import SUBJECT_PREFIX, parse_subject
from evals.services.datasets import (
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
from portal import audit
from portal.access import Actor

LABEL_COLUMNS = frozenset({"trace_id", "item_id", "label"})


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
