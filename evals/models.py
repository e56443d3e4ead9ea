"""Evaluations: Langfuse connections of projects, LLM-as-judge evaluators
(versioned), scheduled evaluation runs and their scores, datasets,
benchmarks across routes, human labels for judge calibration, and reports."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from gateway.models import ModelRoute
from portal import crypto
from portal.models import Organization, Project, optional_amount
from portal.scoping import TenantManager


class LangfuseConnection(models.Model):
    """A portal project's own Langfuse project: where the gateway sends the
    project's traces, and where evaluations read traces and write scores.
    The secret key is encrypted at rest and never returned."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="langfuse_connection")
    host = models.URLField(max_length=300)
    public_key = models.CharField(max_length=200)
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    server_version = models.CharField(max_length=50, blank=True)
    langfuse_project_id = models.CharField(max_length=200, blank=True)
    langfuse_project_name = models.CharField(max_length=200, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager("project__organization")

    def __str__(self) -> str:
        return f"{self.project} -> {self.host}"

    def secret_key(self) -> str:
        return crypto.decrypt_json(self.secret_encrypted).get("secret_key", "")

    def set_secret_key(self, value: str) -> None:
        self.secret_encrypted = crypto.encrypt_json({"secret_key": value})

    def client(self, **kwargs: Any) -> Any:
        from django.conf import settings as django_settings

        from evals.langfuse_client import LangfuseClient

        kwargs.setdefault("timeout", django_settings.LANGFUSE_TIMEOUT)
        return LangfuseClient(self.host, self.public_key, self.secret_key(), **kwargs)

    def trace_url(self, trace_id: str) -> str:
        return f"{self.host}/project/{self.langfuse_project_id}/traces/{trace_id}"

    @property
    def is_standin(self) -> bool:
        """Whether this is the demo's Langfuse stand-in (`LANGFUSE_STANDIN_URL`, which only `make demo`
        sets), to be labelled as such wherever the connection is shown."""
        from django.conf import settings as django_settings

        standin = django_settings.LANGFUSE_STANDIN_URL
        return bool(standin) and self.host.rstrip("/") == standin.rstrip("/")


class LangfuseOrgKey(models.Model):
    """An organization-level Langfuse API key. Where Langfuse entitles it
    (enterprise), the portal creates Langfuse projects and their keys itself."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="langfuse_org_key")
    host = models.URLField(max_length=300)
    public_key = models.CharField(max_length=200)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("organization", role="admin")

    def secret_key(self) -> str:
        return crypto.decrypt_json(self.secret_encrypted).get("secret_key", "")

    def set_secret_key(self, value: str) -> None:
        self.secret_encrypted = crypto.encrypt_json({"secret_key": value})


class ScoreType(models.TextChoices):
    NUMERIC = "numeric", "Numeric, in a range"
    BOOLEAN = "boolean", "Boolean"
    CATEGORICAL = "categorical", "Categorical, one of labels"


class OutputMode(models.TextChoices):
    JSON_SCHEMA = "json_schema", "JSON schema (response_format)"
    TOOL_CALL = "tool_call", "A tool call"


class Evaluator(models.Model):
    """An LLM-as-judge of a project. Its definition lives in versions:
    editing makes a new version, so scores always say what produced them."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluators")
    name = models.CharField(max_length=100, help_text="Also the score name in Langfuse.")
    description = models.CharField(max_length=500, blank=True)
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_evaluator_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def current(self) -> EvaluatorVersion | None:
        return self.versions.order_by("-version").first()


class EvaluatorVersion(models.Model):
    """One immutable definition of an evaluator: the judge route, the
    prompt template and its variables, and the score it produces."""

    evaluator = models.ForeignKey(Evaluator, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    judge_route = models.ForeignKey(ModelRoute, on_delete=models.PROTECT, related_name="+")
    template_key = models.CharField(max_length=50, blank=True, help_text="The built-in template it started from.")
    prompt_template = models.TextField(max_length=20_000)
    variables = models.JSONField(default=dict, blank=True,
                                 help_text="Template variable -> field of the trace or item it is read from.")
    score_type = models.CharField(max_length=20, choices=ScoreType.choices)
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)
    labels = models.JSONField(default=list, blank=True)
    pass_threshold = models.FloatField(null=True, blank=True,
                                       help_text="Numeric scores at or above it pass (benchmarks' pass rate).")
    pass_labels = models.JSONField(default=list, blank=True)
    output_mode = models.CharField(max_length=20, choices=OutputMode.choices, default=OutputMode.JSON_SCHEMA)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("evaluator__project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["evaluator", "version"], name="uniq_evaluator_version")]
        ordering = ["evaluator", "-version"]

    def __str__(self) -> str:
        return f"{self.evaluator.name} v{self.version}"


class EvalSchedule(models.Model):
    """Evaluate a project's new traces regularly: a window of traces that
    continues from the last successful run, filtered, sampled, capped."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="eval_schedules")
    evaluator = models.ForeignKey(Evaluator, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    cron = models.CharField(max_length=100, blank=True, help_text="Crontab, e.g. '*/15 * * * *' (UTC).")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True,
                                                   validators=[MinValueValidator(10), MaxValueValidator(86400 * 31)])
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True,
                                         blank=True, related_name="+")
    filters = models.JSONField(default=dict, blank=True,
                               help_text="name, tags, user_id, environment, metadata (all must match).")
    sampling_rate = models.FloatField(default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    max_traces = models.PositiveIntegerField(default=500, validators=[MinValueValidator(1),
                                                                      MaxValueValidator(100_000)])
    max_judge_spend = optional_amount()
    concurrency = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1), MaxValueValidator(64)],
                                                   help_text="Judge calls in flight at once.")
    initial_lookback_hours = models.PositiveIntegerField(default=24, validators=[MaxValueValidator(24 * 90)])
    last_window_end = models.DateTimeField(null=True, blank=True)
    alert_below = models.FloatField(null=True, blank=True, help_text="Alert when a run's mean score is below.")
    alert_drop = models.FloatField(null=True, blank=True,
                                   help_text="Alert when the mean drops by more than this against the last run.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_schedule_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"


class EvalRun(models.Model):
    """One evaluation of a window of traces, with what happened to each."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="eval_runs")
    schedule = models.ForeignKey(EvalSchedule, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    evaluator_version = models.ForeignKey(EvaluatorVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    considered = models.PositiveIntegerField(default=0)
    sampled = models.PositiveIntegerField(default=0)
    scored = models.PositiveIntegerField(default=0)
    already_scored = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    judge_cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    mean_score = models.FloatField(null=True, blank=True)
    distribution = models.JSONField(default=dict, blank=True)
    stop_reason = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("project__organization")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.evaluator_version}"


class ScoreStatus(models.TextChoices):
    CLAIMED = "claimed", "Being scored"
    SCORED = "scored", "Scored"
    FAILED = "failed", "Failed"
    RETRY = "retry", "To retry"  # the judge call failed for a transient reason: the schedule's next run retries it


class EvalScore(models.Model):
    """The score of one trace by one evaluator version. The unique
    constraint is what makes scoring exactly-once across task retries and
    overlapping runs: a run claims the row before it calls the judge."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    evaluator_version = models.ForeignKey(EvaluatorVersion, on_delete=models.CASCADE, related_name="scores")
    trace_id = models.CharField(max_length=100)
    run = models.ForeignKey(EvalRun, on_delete=models.SET_NULL, null=True, related_name="scores")
    status = models.CharField(max_length=10, choices=ScoreStatus.choices, default=ScoreStatus.CLAIMED)
    value = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=100, blank=True)
    comment = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    judge_cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    langfuse_score_id = models.CharField(max_length=64, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(auto_now_add=True)
    scored_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Judge calls that failed for a transient reason.")

    objects = TenantManager("project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["evaluator_version", "trace_id"], name="uniq_trace_score")]
        indexes = [models.Index(fields=["project", "trace_id"])]


class EvalReport(models.Model):
    """An LLM-written report on a run: the lowest-scoring traces grouped by
    failure pattern, with concrete suggestions, each linked to its traces."""

    run = models.OneToOneField(EvalRun, on_delete=models.CASCADE, related_name="report")
    route = models.ForeignKey(ModelRoute, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    groups = models.JSONField(default=list, blank=True)
    content = models.TextField(blank=True)
    error = models.CharField(max_length=1000, blank=True)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("run__project__organization")


class Dataset(models.Model):
    """Examples to benchmark routes on: input, expected output, metadata."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    langfuse_name = models.CharField(max_length=200, blank=True, help_text="Its name in Langfuse, once pushed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager("project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_dataset_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetItem(models.Model):
    """One example. `external_id` is stable (also its id in Langfuse), so
    pushing and pulling twice never duplicates items."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=100)
    input = models.JSONField()
    expected_output = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source_trace_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("dataset__project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "external_id"], name="uniq_dataset_item")]
        ordering = ["id"]


class HumanLabel(models.Model):
    """A person's judgement of a trace or dataset item, to calibrate a judge against."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    evaluator = models.ForeignKey(Evaluator, on_delete=models.CASCADE, related_name="human_labels")
    trace_id = models.CharField(max_length=100, blank=True)
    dataset_item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    label = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("project__organization")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["evaluator", "trace_id"], condition=~models.Q(trace_id=""),
                                    name="uniq_label_trace"),
            models.UniqueConstraint(fields=["evaluator", "dataset_item"], name="uniq_label_item"),
        ]


class Benchmark(models.Model):
    """A dataset, run through each of a set of routes, scored by evaluators
    and deterministic metrics."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="benchmarks")
    name = models.CharField(max_length=100)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="benchmarks")
    routes = models.ManyToManyField(ModelRoute, related_name="+")
    evaluators = models.ManyToManyField(Evaluator, blank=True, related_name="benchmarks")
    metrics = models.JSONField(default=list, blank=True,
                               help_text='[{"type": "exact_match"}, {"type": "contains", "value": "..."}, '
                                         '{"type": "regex", "pattern": "..."}, {"type": "json_valid"}]')
    concurrency = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1),
                                                                         MaxValueValidator(64)])
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_benchmark_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BenchmarkRun(models.Model):
    """One run of a benchmark: a results matrix per route, compared with the previous run."""

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    processed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    matrix = models.JSONField(default=dict, blank=True)
    comparison = models.JSONField(default=dict, blank=True)
    langfuse_run_name = models.CharField(max_length=200, blank=True)
    total_cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    error = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("benchmark__project__organization")

    class Meta:
        ordering = ["-created_at", "-id"]


class BenchmarkResult(models.Model):
    """One dataset item through one route, and its scores."""

    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="+")
    route = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="+")
    output = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    error = models.CharField(max_length=500, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    passed = models.BooleanField(null=True)
    trace_id = models.CharField(max_length=100, blank=True)

    objects = TenantManager("run__benchmark__project__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "item", "route"], name="uniq_benchmark_result")]


# The evaluation agent's models live in their own module; importing them here registers them with the app.
from evals.agent.models import (  # noqa: E402, F401
    AgentFinding,
    AgentMessage,
    AgentReport,
    AgentSchedule,
    AgentStep,
)
