"""The agent's schedules: a regular investigation of a project on Celery beat
(weekly by default), started now on request, and what follows each scheduled
report: its findings are marked new, known or grown against the schedule's
previous finished report (by `AgentFinding.key`), and an alert goes out when
a new finding appears (`alert_on_new`) or a known one's share grew by more
than `alert_growth`. Nothing changed: no alert."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from evals.agent.models import AgentFinding, AgentReport, AgentSchedule
from evals.lifecycle import STUCK_AFTER
from evals.models import RunStatus
from evals.services.beat import crontab_entry, parse_crontab, sync_entry
from portal import audit
from portal.access import Actor, system_actor
from portal.exceptions import Conflict
from portal.models import Project
from portal.notify import send_alert

log = logging.getLogger(__name__)
SCHEDULE_FIELDS = ("name", "enabled", "cron", "route", "focus", "lookback_hours", "alert_on_new", "alert_growth",
                   "max_steps", "max_tokens", "max_seconds", "max_spend")
BOUNDS = ("max_steps", "max_tokens", "max_seconds", "max_spend")
FINISHED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
#: what beat fires (`evals.tasks_agent.agent_run_schedule`, on the `evals` queue)
BEAT_TASK = "evals.tasks_agent.agent_run_schedule"
#: findings named in one alert (the rest are counted)
ALERT_FINDINGS = 20
#: a finding's title in an alert (the model's words, shaped by trace data): at most this long
ALERT_TITLE = 80
#: what makes a link in a mail client, neutralised in the model's words ("https://" -> "hxxps://")
LINKS = re.compile(r"(?i)\b(?:(https?|ftp)://|(www)\.|(mailto):)([^\s/?#]*)")


def check_cron(cron: str) -> None:
    """A 5-field crontab (UTC) that fires at most hourly: one minute of the hour (each investigation may
    spend up to its max_spend; every minute would be 60 of them an hour)."""
    try:
        minutes = parse_crontab(cron).minute
    except ValueError:
        raise ValidationError({"cron": "Not a 5-field crontab, e.g. '0 6 * * 1' (Mondays at 06:00 UTC)."}) from None
    if len(minutes) != 1:
        raise ValidationError({"cron": "At most hourly: give one minute of the hour, e.g. '0 * * * *' (hourly) "
                                       "or '0 6 * * 1' (Mondays at 06:00 UTC)."})


def check_route(project: Project, schedule: AgentSchedule) -> None:
    """The rule of reports (evals.agent.services.check_route): an active route the project's team may use."""
    from evals.agent.services import check_route as report_route

    report_route(project, schedule.route)


def _sync_beat(schedule: AgentSchedule) -> None:
    sync_entry(schedule, name=f"evals: agent schedule {schedule.pk}", task=BEAT_TASK, queue="evals",
               args=[schedule.pk], enabled=schedule.enabled, when=crontab_entry(schedule.cron))


@transaction.atomic
def schedule_save(*, actor: Actor, project: Project, data: dict[str, Any],
                  schedule: AgentSchedule | None = None) -> AgentSchedule:
    """Create or change a schedule (the team's admins and org admins), with its beat entry."""
    actor.require_team_manager(project.team_id)
    before = audit.snapshot(schedule, SCHEDULE_FIELDS) if schedule else None
    schedule = schedule or AgentSchedule(project=project)
    for field in SCHEDULE_FIELDS:
        if field in data:
            setattr(schedule, field, data[field])
    if schedule.route_id is None:
        raise ValidationError({"route": "Choose the route the agent's model calls go through."})
    if before is None or "route" in data or data.get("enabled"):
        check_route(project, schedule)  # not to switch off a schedule whose route was disabled since
    check_cron(schedule.cron)
    schedule.full_clean(exclude=["project", "periodic_task"], validate_constraints=False)
    if AgentSchedule.objects.filter(project=project, name=schedule.name).exclude(pk=schedule.pk).exists():
        raise ValidationError({"name": "An agent schedule with this name already exists in the project."})
    schedule.save()
    _sync_beat(schedule)
    audit.record(actor, "agent_schedule.update" if before else "agent_schedule.create", schedule, before=before,
                 after=audit.snapshot(schedule, SCHEDULE_FIELDS))
    return schedule


@transaction.atomic
def schedule_delete(*, actor: Actor, schedule: AgentSchedule) -> None:
    """Delete a schedule and its beat entry; its reports stay (without a schedule)."""
    actor.require_team_manager(schedule.project.team_id)
    audit.record(actor, "agent_schedule.delete", schedule, before=audit.snapshot(schedule, SCHEDULE_FIELDS))
    if schedule.periodic_task_id:
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    schedule.delete()


def in_progress(schedule: AgentSchedule) -> bool:
    """A report of the schedule is queued or running (an older one's worker died: it does not count)."""
    return AgentReport.objects.filter(schedule=schedule, status__in=[RunStatus.QUEUED, RunStatus.RUNNING],
                                      created_at__gte=timezone.now() - STUCK_AFTER).exists()


def schedule_window(schedule: AgentSchedule, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last `lookback_hours`, up to `EVALS_INGESTION_DELAY_SECONDS` ago (Langfuse lists late traces late)."""
    end = now - dt.timedelta(seconds=settings.EVALS_INGESTION_DELAY_SECONDS)
    return end - dt.timedelta(hours=schedule.lookback_hours), end


def _report(actor: Actor, schedule: AgentSchedule) -> AgentReport:
    from evals.agent.services import report_create

    start, end = schedule_window(schedule, timezone.now())
    return report_create(actor=actor, project=schedule.project, route=schedule.route, focus=schedule.focus,
                         window_start=start, window_end=end, schedule=schedule,
                         **{name: getattr(schedule, name) for name in BOUNDS})


@transaction.atomic
def schedule_run_now(*, actor: Actor, schedule: AgentSchedule) -> AgentReport:
    """A report of the schedule, now (409 `Conflict` while one of it is queued or running)."""
    actor.require_team_manager(schedule.project.team_id)
    AgentSchedule.objects.select_for_update().filter(pk=schedule.pk).first()  # two clicks make one report
    if in_progress(schedule):
        raise Conflict("A report of this schedule is in progress; wait for it to finish.")
    return _report(actor, schedule)


def schedule_report_create(*, schedule_id: int) -> AgentReport | None:
    """Beat's tick: a queued report of the schedule; None when the schedule is disabled or gone, or its last
    report is still going. A tick that cannot start one (its route was disabled or taken from the team, the
    start was refused) leaves a failed report saying why, in the schedule's list and page, and alerts once
    per reason (the next tick tries again)."""
    schedule = (AgentSchedule.objects.select_related("project__organization", "route")
                .filter(pk=schedule_id, enabled=True).first())
    if schedule is None:
        return None
    actor = system_actor(schedule.project.organization, f"agent schedule {schedule.pk}")
    try:
        return schedule_run_now(actor=actor, schedule=schedule)
    except Conflict as busy:
        log.info("agent schedule %s: no report this time: %s", schedule_id, busy)
        return None
    except (ValidationError, PermissionDenied) as refused:
        return _refused(schedule, refused)


def _reason(exc: ValidationError | PermissionDenied) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


def _refused(schedule: AgentSchedule, exc: ValidationError | PermissionDenied) -> AgentReport:
    reason = f"The schedule could not start an investigation through route '{schedule.route.name}': {_reason(exc)}"
    log.warning("agent schedule %s: %s", schedule.pk, reason)
    start, end = schedule_window(schedule, timezone.now())
    now = timezone.now()
    report = AgentReport.objects.create(
        project=schedule.project, route=schedule.route, schedule=schedule, focus=schedule.focus,
        window_start=start, window_end=end, status=RunStatus.FAILED, error=reason[:1000],
        stop_reason="not started", started_at=now, finished_at=now,
        **{name: getattr(schedule, name) for name in BOUNDS})
    _alert_failed(report, schedule)
    return report


def _alert_failed(report: AgentReport, schedule: AgentSchedule) -> None:
    """Alerts that a scheduled report failed, unless the schedule's report before it failed for the same reason."""
    before = (AgentReport.objects.filter(schedule=schedule, created_at__lte=report.created_at)
              .exclude(pk=report.pk).order_by("-created_at", "-id").first())
    if before is not None and before.status == RunStatus.FAILED and before.error == report.error:
        log.warning("agent schedule %s: report %s failed again for the same reason (alerted before)",
                    schedule.pk, report.pk)
        return
    project = report.project
    subject = f"Agent schedule '{schedule.name}' of {project.name}: report {report.pk} failed"
    body = (f"{subject}.\n\n{report.error or report.stop_reason or 'No reason was recorded.'}\n\n"
            f"The report: {report_url(report)}\nThe next run tries again; this alert is not repeated while "
            f"the reason stays the same.")
    send_alert(project.organization, subject=subject, body=body, payload={
        "kind": "agent_failed", "project": project.name, "schedule": schedule.name, "report": report.pk,
        "url": report_url(report), "error": report.error})


def report_url(report: AgentReport) -> str:
    """The report's page in the portal."""
    return settings.PORTAL_PUBLIC_URL + reverse("web:agent-report", kwargs={
        "org_slug": report.project.organization.slug, "project_id": report.project_id, "report_id": report.pk})


def previous_report(report: AgentReport) -> AgentReport | None:
    """The schedule's finished report before this one."""
    return (AgentReport.objects.filter(schedule_id=report.schedule_id, status__in=FINISHED)
            .exclude(pk=report.pk).filter(created_at__lte=report.created_at)
            .order_by("-created_at", "-id").first())


def grew(finding: AgentFinding, before: AgentFinding, growth: float | None) -> bool:
    """The finding's share (its count when a share is unknown) grew by more than `growth` (0.5 = by half)."""
    if growth is None:
        return False
    now, then = ((finding.share, before.share) if finding.share is not None and before.share is not None
                 else (float(finding.count), float(before.count)))
    if then <= 0:
        return now > 0
    return (now - then) / then > growth


def after_report(report: AgentReport) -> list[AgentFinding]:
    """Marks a scheduled report's findings new / known / grown and alerts; returns the findings alerted on."""
    schedule = report.schedule
    if schedule is not None and report.status == RunStatus.FAILED:
        log.warning("agent schedule %s: report %s failed: %s", schedule.pk, report.pk, report.error)
        _alert_failed(report, schedule)
    if schedule is None or report.status not in FINISHED:
        return []
    previous = previous_report(report)
    known = {f.key: f for f in previous.findings.all()} if previous else {}
    findings = list(report.findings.all())
    for finding in findings:
        before = known.get(finding.key)
        finding.status = "new" if before is None else "grown" if grew(finding, before, schedule.alert_growth) \
            else "known"
    AgentFinding.objects.bulk_update(findings, ["status"])
    alerted = [f for f in findings if f.status == "grown" or (f.status == "new" and schedule.alert_on_new)]
    if alerted:
        _alert(report, schedule, alerted, known)
    return alerted


def _alert(report: AgentReport, schedule: AgentSchedule, alerted: list[AgentFinding],
           known: dict[str, AgentFinding]) -> None:
    project = report.project
    new = [f for f in alerted if f.status == "new"]
    grown = [f for f in alerted if f.status == "grown"]
    parts = ([f"{len(new)} new finding{'s' * (len(new) != 1)}"] if new else []) + \
            ([f"{len(grown)} finding{'s' * (len(grown) != 1)} grew"] if grown else [])
    subject = f"Agent schedule '{schedule.name}' of {project.name}: {', '.join(parts)}"
    lines = [f"- new: {alert_title(f.title)} ({f.count} traces{_share(f.share)})" for f in new[:ALERT_FINDINGS]]
    lines += [f"- grew: {alert_title(f.title)} ({_share(known[f.key].share, '')} -> {_share(f.share, '')}, "
              f"{f.count} traces)" for f in grown[:ALERT_FINDINGS]]
    if len(alerted) > 2 * ALERT_FINDINGS:
        lines.append(f"... and {len(alerted) - 2 * ALERT_FINDINGS} more")
    body = (f"{subject}.\n\nReport {report.pk}: {report_url(report)}\n" + "\n".join(lines) +
            f"\n\nThe findings' titles are the agent's words, drawn from the project's trace data (which anyone "
            f"calling the application can shape): shortened to {ALERT_TITLE} characters, links disabled "
            f"('hxxps://'). Do not follow instructions in them; read the evidence on the report's page.")
    send_alert(project.organization, subject=subject, body=body, payload={
        "kind": "agent", "project": project.name, "schedule": schedule.name, "report": report.pk,
        "url": report_url(report),
        "new": [_row(f) for f in new[:ALERT_FINDINGS]],
        "grown": [{**_row(f), "previous_share": known[f.key].share, "previous_count": known[f.key].count}
                  for f in grown[:ALERT_FINDINGS]]})


def _share(share: float | None, prefix: str = ", ") -> str:
    return "" if share is None and prefix else "?" if share is None else f"{prefix}{share:.1%}"


def alert_title(title: str) -> str:
    """A finding's title as an alert shows it: one line, at most ALERT_TITLE characters, no clickable link."""
    text = " ".join(str(title).split())
    text = LINKS.sub(_defang, text)
    return text if len(text) <= ALERT_TITLE else text[:ALERT_TITLE - 1].rstrip() + "…"


def _defang(link: re.Match[str]) -> str:
    scheme, www, mailto, host = link.groups()
    host = host.replace(".", "[.]")
    if scheme:
        return f"{scheme[0]}xx{scheme[3:]}://{host}" if scheme[0] in "hH" else f"{scheme[0]}x{scheme[2:]}://{host}"
    return f"{www}[.]{host}" if www else f"{mailto}[:]{host}"


def _row(finding: AgentFinding) -> dict[str, Any]:
    return {"index": finding.index, "key": finding.key, "title": alert_title(finding.title), "count": finding.count,
            "share": finding.share}
