"""Writes to evaluators (versioned), schedules (with their beat entries) and runs."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from evals.judge import template_problem
from evals.lifecycle import STUCK_AFTER
from evals.models import EvalRun, EvalSchedule, Evaluator, EvaluatorVersion, RunStatus
from evals.services.beat import crontab_entry, parse_crontab, sync_entry
from evals.templates import TEMPLATES, template
from gateway.services.keys import usable_routes
from portal import audit
from portal.access import Actor
from portal.exceptions import Conflict
from portal.models import Organization, Project

VERSION_FIELDS = ("judge_route", "template_key", "prompt_template", "variables", "score_type", "min_value",
                  "max_value", "labels", "pass_threshold", "pass_labels", "output_mode")
#: Runs (evaluations and calibrations) of one organization queued or running at once, on the shared
#: workers (per organization, not per project: a team admin may create any number of projects).
MAX_ACTIVE_RUNS = 16
log = logging.getLogger(__name__)
SCHEDULE_FIELDS = ("name", "enabled", "cron", "interval_seconds", "filters", "sampling_rate", "max_traces",
                   "max_judge_spend", "concurrency", "initial_lookback_hours", "alert_below", "alert_drop")


def version_state(v: EvaluatorVersion) -> dict[str, Any]:
    return audit.snapshot(v, ("version", *VERSION_FIELDS))


def check_version(project: Project, data: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    usable = usable_routes(project.team_id, project.organization_id).filter(is_active=True)
    if not usable.filter(pk=data["judge_route"].pk).exists():
        errors["judge_route"] = "The route is not available to this project's team."
    kind = data["score_type"]
    if kind == "numeric":
        lo, hi = data.get("min_value"), data.get("max_value")
        if lo is None or hi is None or lo >= hi:
            errors["min_value"] = "A numeric score needs min_value < max_value."
    if kind == "categorical":
        labels = data.get("labels") or []
        if len(labels) < 2 or len(set(labels)) != len(labels):
            errors["labels"] = "A categorical score needs two or more distinct labels."
        elif not set(data.get("pass_labels") or []) <= set(labels):
            errors["pass_labels"] = "Pass labels must be among the labels."
    if kind == "boolean" and not set(data.get("pass_labels") or []) <= {"true", "false"}:
        errors["pass_labels"] = "For a boolean score: ['true'] or ['false']."
    problem = template_problem(data.get("prompt_template", ""))
    if problem:
        errors["prompt_template"] = problem
    if errors:
        raise ValidationError(errors)


def _definition(data: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    if data.get("template"):
        base = {**base, **template(data["template"])}
    merged = {**base, **data}
    return {k: merged[k] for k in VERSION_FIELDS if k in merged}  # a template also names a description


@transaction.atomic
def evaluator_create(*, actor: Actor, project: Project, data: dict[str, Any]) -> Evaluator:
    actor.require_team_manager(project.team_id)
    definition = _definition(data, {})
    missing = [f for f in ("judge_route", "prompt_template", "score_type") if f not in definition]
    if missing:
        raise ValidationError({f: "This field is required (or choose a template)." for f in missing})
    check_version(project, definition)
    if Evaluator.objects.filter(project=project, name=data["name"]).exists():
        raise ValidationError({"name": "An evaluator with this name already exists."})
    evaluator = Evaluator.objects.create(project=project, name=data["name"],
                                         description=data.get("description") or TEMPLATES.get(
                                             data.get("template") or "", {}).get("description", ""))
    version = EvaluatorVersion.objects.create(evaluator=evaluator, version=1, created_by=actor.user,
                                              **{k: definition[k] for k in VERSION_FIELDS if k in definition})
    audit.record(actor, "evaluator.create", evaluator, after=version_state(version))
    return evaluator


@transaction.atomic
def evaluator_update(*, actor: Actor, evaluator: Evaluator, data: dict[str, Any]) -> Evaluator:
    """Name and description change in place; any change to the definition makes a new version."""
    actor.require_team_manager(evaluator.project.team_id)
    evaluator = Evaluator.objects.select_for_update().get(pk=evaluator.pk)
    for field in ("name", "description", "archived"):
        if field in data:
            setattr(evaluator, field, data[field])
    if "name" in data and Evaluator.objects.filter(project=evaluator.project, name=data["name"]).exclude(
            pk=evaluator.pk).exists():
        raise ValidationError({"name": "An evaluator with this name already exists."})
    evaluator.save()
    current = evaluator.current
    assert current is not None
    base = {k: getattr(current, k) for k in VERSION_FIELDS}
    definition = _definition(data, base)
    if definition != base:
        check_version(evaluator.project, definition)
        new = EvaluatorVersion.objects.create(evaluator=evaluator, version=current.version + 1,
                                              created_by=actor.user, **definition)
        audit.record(actor, "evaluator.update", evaluator, before=version_state(current), after=version_state(new))
    return evaluator


def _beat_schedule(schedule: EvalSchedule) -> dict[str, Any]:
    if schedule.cron:
        return crontab_entry(schedule.cron)
    interval, _ = IntervalSchedule.objects.get_or_create(every=schedule.interval_seconds, period="seconds")
    return {"interval": interval, "crontab": None}


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 200


def _texts(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= 20 and all(_text(v) for v in value)


def _scalars(value: Any) -> bool:
    return isinstance(value, dict) and len(value) <= 50 and all(
        _text(k) and (_text(v) or isinstance(v, (int, float, bool))) for k, v in value.items())


#: The trace filters a schedule may have, and their shapes (the worker reads them as such).
FILTER_SHAPES = {"name": _text, "tags": _texts, "user_id": _text, "environment": _texts, "metadata": _scalars}
FILTER_HELP = {"name": "a text", "tags": "a list of texts", "user_id": "a text", "environment": "a list of texts",
               "metadata": "an object of keys and texts or numbers"}


def check_schedule(data: dict[str, Any]) -> None:
    cron, interval = data.get("cron") or "", data.get("interval_seconds")
    if bool(cron) == bool(interval):
        raise ValidationError({"cron": "Give either a crontab ('cron') or 'interval_seconds'."})
    if cron:
        try:
            parse_crontab(cron)
        except ValueError:
            raise ValidationError({"cron": "Not a 5-field crontab, e.g. '*/15 * * * *'."}) from None
    filters = data.get("filters") or {}
    unknown = set(filters) - set(FILTER_SHAPES)
    if unknown:
        raise ValidationError({"filters": f"Unknown filters: {', '.join(sorted(unknown))[:200]}."})
    if len(json.dumps(filters)) > 4000:
        raise ValidationError({"filters": "Too large."})
    wrong = [name for name, value in filters.items() if not FILTER_SHAPES[name](value)]
    if wrong:
        raise ValidationError({"filters": [f"'{name}' must be {FILTER_HELP[name]}." for name in sorted(wrong)]})


def _sync_beat(schedule: EvalSchedule) -> None:
    from evals.tasks import run_schedule

    sync_entry(schedule, name=f"evals: schedule {schedule.pk}", task=run_schedule.name, queue=run_schedule.queue,
               args=[schedule.pk], enabled=schedule.enabled, when=_beat_schedule(schedule))


@transaction.atomic
def schedule_save(*, actor: Actor, project: Project, data: dict[str, Any],
                  schedule: EvalSchedule | None = None) -> EvalSchedule:
    actor.require_team_manager(project.team_id)
    before = audit.snapshot(schedule, SCHEDULE_FIELDS) if schedule else None
    schedule = schedule or EvalSchedule(project=project)
    if "evaluator" in data:
        if data["evaluator"].project_id != project.pk:
            raise ValidationError({"evaluator": "Choose an evaluator of this project."})
        schedule.evaluator = data["evaluator"]
    for field in SCHEDULE_FIELDS:
        if field in data:
            setattr(schedule, field, data[field])
    check_schedule({"cron": schedule.cron, "interval_seconds": schedule.interval_seconds, "filters": schedule.filters})
    schedule.full_clean(validate_constraints=False)
    if EvalSchedule.objects.filter(project=project, name=schedule.name).exclude(pk=schedule.pk).exists():
        raise ValidationError({"name": "A schedule with this name already exists."})
    schedule.save()
    _sync_beat(schedule)
    audit.record(actor, "schedule.update" if before else "schedule.create", schedule, before=before,
                 after=audit.snapshot(schedule, SCHEDULE_FIELDS))
    return schedule


@transaction.atomic
def schedule_delete(*, actor: Actor, schedule: EvalSchedule) -> None:
    actor.require_team_manager(schedule.project.team_id)
    audit.record(actor, "schedule.delete", schedule, before=audit.snapshot(schedule, SCHEDULE_FIELDS))
    if schedule.periodic_task_id:
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    schedule.delete()


def in_progress(runs: QuerySet[EvalRun]) -> QuerySet[EvalRun]:
    return runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING],
                       created_at__gte=timezone.now() - STUCK_AFTER)  # older: its worker died


def check_capacity(project: Project, schedule: EvalSchedule | None = None) -> None:
    """Work a tenant hands to the shared workers is bounded: one run of a
    schedule at a time (a second one would read the same window again, as the
    window moves on only when a run succeeds), and at most `MAX_ACTIVE_RUNS`
    of an organization. Call it inside a transaction: it locks the
    organization's row, so that concurrent requests count each other."""
    Organization.objects.select_for_update().filter(pk=project.organization_id).first()
    if schedule is not None and in_progress(EvalRun.objects.filter(schedule=schedule)).exists():
        raise Conflict("A run of this schedule is in progress; wait for it to finish.")
    active = in_progress(EvalRun.objects.filter(project__organization_id=project.organization_id)).count()
    if active >= MAX_ACTIVE_RUNS:
        raise Conflict(f"{MAX_ACTIVE_RUNS} evaluation runs of this organization are queued or running; wait for "
                       "one to finish.")


def schedule_window(schedule: EvalSchedule, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The next window of a schedule: from where the last succeeded run ended to
    `EVALS_INGESTION_DELAY_SECONDS` ago (Langfuse lists a trace only once it has
    ingested it: a window that ended now would miss the late ones for good)."""
    end = now - dt.timedelta(seconds=settings.EVALS_INGESTION_DELAY_SECONDS)
    start = schedule.last_window_end or end - dt.timedelta(hours=schedule.initial_lookback_hours)
    return min(start, end), end


@transaction.atomic
def eval_run_create(*, project: Project, evaluator: Evaluator, schedule: EvalSchedule | None = None,
                    window_start: dt.datetime | None = None, window_end: dt.datetime | None = None) -> EvalRun:
    """A queued run (409 `Conflict` beyond what `check_capacity` allows); a
    schedule's run covers the schedule's next window (`schedule_window`)."""
    check_capacity(project, schedule)
    version = evaluator.current
    if version is None:
        raise ValidationError({"evaluator": "The evaluator has no version."})
    now = timezone.now()
    if schedule is not None:
        window_start, window_end = schedule_window(schedule, now)
    return EvalRun.objects.create(project=project, schedule=schedule, evaluator_version=version,
                                  window_start=window_start, window_end=window_end or now, status=RunStatus.QUEUED)


def schedule_run_create(*, schedule_id: int) -> EvalRun | None:
    """Beat's tick of a schedule: a queued run of its next window, sent to the
    worker; None when the schedule is disabled, its evaluator archived, or its
    last run still going (the tick is skipped: the next one covers the window)."""
    from evals.tasks import execute_eval_run

    schedule = EvalSchedule.objects.select_related("project", "evaluator").filter(pk=schedule_id,
                                                                                 enabled=True).first()
    if schedule is None or schedule.evaluator.archived:
        return None
    try:
        run = eval_run_create(project=schedule.project, evaluator=schedule.evaluator, schedule=schedule)
    except Conflict as busy:
        log.info("schedule %s: not run: %s", schedule_id, busy)
        return None
    execute_eval_run.delay(run.pk)  # committed: `eval_run_create` is atomic and this is not
    return run


def enqueue(run: EvalRun) -> None:
    from evals.tasks import execute_eval_run

    transaction.on_commit(lambda: execute_eval_run.delay(run.pk))
