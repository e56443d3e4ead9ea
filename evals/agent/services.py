"""Writes of the evaluation agent: a report (an investigation, queued for
the `evals` worker) and a follow-up question (queued for an answer); the
reports and answers whose worker was lost are failed by beat."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from evals.agent.models import AgentMessage, AgentReport, AgentSchedule
from evals.lifecycle import STUCK_AFTER
from evals.models import RunStatus
from gateway.models import ModelRoute
from gateway.services.keys import usable_routes
from portal.access import Actor
from portal.exceptions import Conflict
from portal.models import Organization, Project

BOUNDS = ("max_steps", "max_tokens", "max_seconds", "max_spend")
DEFAULT_WINDOW = dt.timedelta(days=7)
MAX_WINDOW = dt.timedelta(days=90)
MAX_QUESTION = 4000
#: Investigations of one organization queued or running at once, on the `evals` workers every tenant shares.
MAX_ACTIVE_REPORTS = 4
BUSY = (RunStatus.QUEUED, RunStatus.RUNNING)
LOST = "The agent stopped without finishing (its worker was lost)."


def check_route(project: Project, route: ModelRoute) -> None:
    if not usable_routes(project.team_id, project.organization_id).filter(is_active=True, pk=route.pk).exists():
        raise ValidationError({"route": "The route is not available to this project's team."})


def window(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    end = end or timezone.now()
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise ValidationError({"window_start": "The window must start before it ends."})
    if end - start > MAX_WINDOW:
        raise ValidationError({"window_start": f"The window may span at most {MAX_WINDOW.days} days."})
    return start, end


def check_capacity(project: Project) -> None:
    """At most MAX_ACTIVE_REPORTS investigations of an organization at once (409). Inside the caller's
    transaction: the organization's row is locked, so that concurrent starts count each other."""
    # FOR NO KEY UPDATE: starts count each other, and inserts that reference the organization (keys, usage)
    # are not blocked by it (FOR UPDATE blocks their foreign-key checks: a deadlock with a worker's service key)
    Organization.objects.select_for_update(no_key=True).filter(pk=project.organization_id).first()
    busy = AgentReport.objects.filter(project__organization_id=project.organization_id, status__in=BUSY,
                                      created_at__gte=timezone.now() - STUCK_AFTER)  # older: its worker died
    if busy.count() >= MAX_ACTIVE_REPORTS:
        raise Conflict(f"{MAX_ACTIVE_REPORTS} investigations of this organization are queued or running; wait for "
                       "one to finish.")


@transaction.atomic
def report_create(*, actor: Actor, project: Project, route: ModelRoute, focus: str = "",
                  window_start: dt.datetime | None = None, window_end: dt.datetime | None = None,
                  schedule: AgentSchedule | None = None, **bounds: Any) -> AgentReport:
    """A queued investigation of the project's window on `route`, bounded by `bounds` (the model's defaults
    for those not given); its task starts on commit."""
    actor.require_team_manager(project.team_id)
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise ValidationError({name: "Not a bound of an investigation." for name in sorted(unknown)})
    check_route(project, route)
    if schedule is not None and schedule.project_id != project.pk:
        raise ValidationError({"schedule": "The schedule belongs to another project."})
    start, end = window(window_start, window_end)
    check_capacity(project)
    values = {k: v for k, v in bounds.items() if v is not None}
    if "max_spend" in values:
        values["max_spend"] = Decimal(str(values["max_spend"]))
    report = AgentReport(project=project, route=route, focus=(focus or "").strip(), window_start=start,
                         window_end=end, schedule=schedule, created_by=actor.user, **values)
    report.full_clean(exclude=["project", "route", "schedule", "created_by"])
    report.save()
    from evals.tasks_agent import agent_investigate

    transaction.on_commit(lambda: agent_investigate.delay(report.pk))
    return report


@transaction.atomic
def message_create(*, actor: Actor, report: AgentReport, content: str) -> AgentMessage:
    """A follow-up question and its queued answer (returned); refused while the report or another answer runs."""
    project = report.project
    actor.require_team_manager(project.team_id)
    text = (content or "").strip()
    if not text:
        raise ValidationError({"content": "Ask a question."})
    if len(text) > MAX_QUESTION:
        raise ValidationError({"content": f"At most {MAX_QUESTION} characters."})
    report = AgentReport.objects.select_for_update().get(pk=report.pk)  # one question at a time per report
    if report.status in BUSY:
        raise ValidationError({"content": "The investigation is still running; ask when it has finished."})
    if report.messages.filter(role="assistant", status__in=BUSY).exists():
        raise ValidationError({"content": "The previous question is still being answered."})
    if report.cost >= report.max_spend or report.tokens_used >= report.max_tokens:
        # an answer gets what is left of the report's spend and tokens: nothing is left
        used = (f"${report.cost:.4f} of ${report.max_spend:.2f}" if report.cost >= report.max_spend
                else f"{report.tokens_used} of {report.max_tokens} tokens")
        raise ValidationError({"content": f"This report's bounds are used up ({used}): start a new investigation "
                                          "to ask more."})
    check_route(project, report.route)
    AgentMessage.objects.create(report=report, role="user", content=text, created_by=actor.user)
    answer = AgentMessage.objects.create(report=report, role="assistant", status=RunStatus.QUEUED,
                                         created_by=actor.user)
    from evals.tasks_agent import agent_answer

    transaction.on_commit(lambda: agent_answer.delay(answer.pk))
    return answer


def fail_stuck() -> int:
    """Reports and answers whose worker died (killed, past its hard limit, out of retries): after longer than
    any may take, they are failed; what they found is kept."""
    cutoff = timezone.now() - STUCK_AFTER
    now = timezone.now()
    reports = AgentReport.objects.filter(Q(started_at__isnull=True) | Q(started_at__lt=cutoff),
                                         status__in=BUSY, created_at__lt=cutoff)
    answers = AgentMessage.objects.filter(role="assistant", status__in=BUSY, created_at__lt=cutoff)
    return (reports.filter(steps_taken__gt=0).update(status=RunStatus.PARTIAL, stop_reason=LOST, finished_at=now)
            + reports.update(status=RunStatus.FAILED, error=LOST, finished_at=now)
            + answers.update(status=RunStatus.FAILED, error=LOST, finished_at=now))
