"""The evaluation agent's records: a report (one investigation of a project),
its steps (each model message and each tool call), its findings, the
conversation of follow-up questions, and schedules."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from gateway.models import ModelRoute
from portal.models import Project
from portal.scoping import TenantManager

if TYPE_CHECKING:
    from portal.access import Actor

#: The bounds of one investigation (or one follow-up answer), and their limits.
DEFAULT_MAX_STEPS, MAX_STEPS = 20, 100
DEFAULT_MAX_TOKENS, MAX_TOKENS = 1_000_000, 5_000_000
DEFAULT_MAX_SECONDS, MAX_SECONDS = 600, 3000
DEFAULT_MAX_SPEND = Decimal("1.00")


@dataclass(frozen=True)
class ProjectTeamRows:
    """Who reads the agent's records of a project: those who read its team's usage. An investigation
    holds the project's usage by key and route (names, prefixes, spend), its traces and scores, which
    the portal shows a member only for their own teams (TeamOrOwn, TeamRows): so org viewers and up
    (`Actor.sees_every_team`) see every report, step, message, finding and schedule, a member only
    those of their teams' projects; anyone else gets 404 and empty lists."""

    team: str  # the lookup to the project's team

    def q(self, actor: Actor) -> Q | None:
        return None if actor.sees_every_team() else Q(**{f"{self.team}__in": list(actor.team_roles())})


REPORT_ROWS = ProjectTeamRows(team="project__team")
REPORT_PART_ROWS = ProjectTeamRows(team="report__project__team")


def spend_field() -> models.DecimalField[Decimal, Decimal]:
    return models.DecimalField(max_digits=12, decimal_places=4, default=DEFAULT_MAX_SPEND,
                               validators=[MinValueValidator(Decimal("0.0001"))], help_text="USD.")


class Bounds(models.Model):
    """What one investigation may use: model turns, tokens, wall time, spend."""

    max_steps = models.PositiveSmallIntegerField(default=DEFAULT_MAX_STEPS,
                                                 validators=[MinValueValidator(1), MaxValueValidator(MAX_STEPS)])
    max_tokens = models.PositiveIntegerField(default=DEFAULT_MAX_TOKENS,
                                             validators=[MinValueValidator(1000), MaxValueValidator(MAX_TOKENS)])
    max_seconds = models.PositiveIntegerField(default=DEFAULT_MAX_SECONDS,
                                              validators=[MinValueValidator(10), MaxValueValidator(MAX_SECONDS)])
    max_spend = spend_field()

    class Meta:
        abstract = True


class AgentSchedule(Bounds):
    """A regular investigation of a project (weekly by default), with an alert
    when a new finding appears or a known one grows."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agent_schedules")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    cron = models.CharField(max_length=100, default="0 6 * * 1", help_text="Crontab (UTC); weekly by default.")
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True,
                                         blank=True, related_name="+")
    route = models.ForeignKey(ModelRoute, on_delete=models.PROTECT, related_name="+")
    focus = models.TextField(max_length=2000, blank=True, help_text="What to look at, in the admin's words.")
    lookback_hours = models.PositiveIntegerField(default=24 * 7, validators=[MinValueValidator(1),
                                                                             MaxValueValidator(24 * 90)])
    alert_on_new = models.BooleanField(default=True, help_text="Alert when a finding appears that the last "
                                                               "report of this schedule did not have.")
    alert_growth = models.FloatField(null=True, blank=True, default=0.5, validators=[MinValueValidator(0.0)],
                                     help_text="Alert when a known finding's share grows by more than this "
                                               "(0.5 = by half) against the last report of this schedule.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("project__organization", rows=REPORT_ROWS)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_agent_schedule_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentReport(Bounds):
    """One investigation of a project by the agent, and its report: a summary
    and findings whose evidence was checked. Status as runs: queued, running,
    succeeded, partial (a bound stopped it; what it found is kept), failed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agent_reports")
    schedule = models.ForeignKey(AgentSchedule, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="reports")
    route = models.ForeignKey(ModelRoute, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    status = models.CharField(max_length=10, default="queued")  # evals.models.RunStatus
    focus = models.TextField(max_length=2000, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    steps_taken = models.PositiveIntegerField(default=0, help_text="Model turns, all conversation turns included.")
    tokens_used = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    summary = models.TextField(blank=True)
    findings_dropped = models.PositiveIntegerField(default=0)
    dropped = models.JSONField(default=list, blank=True,
                               help_text="Each dropped finding's title and why its evidence did not hold.")
    stop_reason = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("project__organization", rows=REPORT_ROWS)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return f"report {self.pk} of {self.project}"


class AgentMessage(models.Model):
    """A turn of the report's conversation: a person's follow-up question
    (`user`) or the agent's answer (`assistant`, with its status and evidence).
    The investigation itself has no message: its steps have none."""

    report = models.ForeignKey(AgentReport, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=[("user", "user"), ("assistant", "assistant")])
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, default="succeeded")  # an answer: queued, running, ... (RunStatus)
    evidence = models.JSONField(default=list, blank=True,
                                help_text="[{trace_id, steps: [step index, ...]}] that the answer cites.")
    evidence_dropped = models.PositiveIntegerField(default=0)
    stop_reason = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("report__project__organization", rows=REPORT_PART_ROWS)

    class Meta:
        ordering = ["created_at", "id"]


class AgentStep(models.Model):
    """One step of an investigation or of an answer: the model's message
    (`model`: its text and the tool calls it asked for) or one tool call
    (`tool`: its name, arguments, a digest of what it returned and the
    structured result that evidence is checked against)."""

    report = models.ForeignKey(AgentReport, on_delete=models.CASCADE, related_name="steps")
    message = models.ForeignKey(AgentMessage, on_delete=models.CASCADE, null=True, blank=True, related_name="steps")
    index = models.PositiveIntegerField(help_text="Order within the report, all turns included.")
    kind = models.CharField(max_length=10, choices=[("model", "model"), ("tool", "tool")])
    content = models.TextField(blank=True, help_text="The model's text (bounded).")
    tool_call_id = models.CharField(max_length=100, blank=True)
    tool_name = models.CharField(max_length=100, blank=True)
    arguments = models.JSONField(null=True, blank=True, help_text="As the model sent them (bounded), or null.")
    result_digest = models.TextField(blank=True, help_text="What the model was shown of the result.")
    result = models.JSONField(null=True, blank=True, help_text="The tool's structured result (bounded).")
    trace_ids = models.JSONField(default=list, blank=True, help_text="The project's traces this result holds.")
    truncated = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    llm_trace_id = models.CharField(max_length=64, blank=True, help_text="The model call's own trace (Langfuse).")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("report__project__organization", rows=REPORT_PART_ROWS)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["report", "index"], name="uniq_agent_step_index")]


class AgentFinding(models.Model):
    """A finding of a report whose evidence held: what goes wrong, how often,
    what it costs, what to try, and the traces and tool calls that show it.
    `key` (a slug of its title) follows a finding across a schedule's reports."""

    report = models.ForeignKey(AgentReport, on_delete=models.CASCADE, related_name="findings")
    index = models.PositiveSmallIntegerField()
    key = models.SlugField(max_length=120)
    title = models.CharField(max_length=200)
    problem = models.TextField(max_length=4000)
    count = models.PositiveIntegerField(help_text="Traces of the window that show it, by the tools' own data.")
    share = models.FloatField(null=True, blank=True, help_text="count / traces in the window, when known.")
    cost = models.DecimalField(max_digits=18, decimal_places=9, null=True, blank=True,
                               help_text="What those traces cost (USD), when known.")
    change_kind = models.CharField(max_length=20, help_text="prompt, model, route, retrieval, tool, guardrail")
    change = models.TextField(max_length=4000)
    trace_ids = models.JSONField(default=list)
    steps = models.JSONField(default=list, help_text="Indexes of the tool steps whose results support it.")
    status = models.CharField(max_length=10, default="new", help_text="new, known or grown (schedules).")
    dataset = models.ForeignKey("evals.Dataset", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    objects = TenantManager("report__project__organization", rows=REPORT_PART_ROWS)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["report", "index"], name="uniq_agent_finding_index")]
