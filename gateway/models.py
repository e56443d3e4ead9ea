"""Gateway objects: provider credentials, model routes and virtual keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from gateway import latency
from portal.models import BudgetFields, Organization, Project, Team, optional_amount
from portal.scoping import TeamOrOwn, TenantManager

if TYPE_CHECKING:
    from portal.access import Actor

ROUTE_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$",
    "Use up to 100 letters, digits and . _ : / -, starting with a letter or digit.",
)


class ProviderType(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    BEDROCK = "bedrock", "AWS Bedrock"
    VERTEX_AI = "vertex_ai", "Google Vertex AI"
    AZURE = "azure", "Azure OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, TGI, Ollama...)"


class ProviderCredential(models.Model):
    """How one organization reaches one provider account. Secrets are
    encrypted with the portal's key and never leave it in any API or page."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=30, choices=ProviderType.choices)
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True)
    secret_fields = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager("organization", role="admin")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_credential_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelRoute(models.Model):
    """A public model name users type (for example `chat`), served by an
    ordered list of deployments, with retries and fallbacks. Two
    organizations may each have a route of the same name; they never mix."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="routes")
    name = models.CharField(max_length=100, validators=[ROUTE_NAME_VALIDATOR])
    description = models.CharField(max_length=500, blank=True)
    is_active = models.BooleanField(default=True)
    num_retries = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(10)])
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True,
                                                  validators=[MinValueValidator(1), MaxValueValidator(3600)])
    input_cost_per_million = optional_amount()
    output_cost_per_million = optional_amount()
    allowed_teams = models.ManyToManyField(Team, blank=True, related_name="+",
                                           help_text="Empty: every team of the organization may use it.")
    fallbacks = models.ManyToManyField("self", through="RouteFallback", symmetrical=False, blank=True,
                                       related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager("organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_route_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def model_group(self) -> str:
        """The LiteLLM model group: organization-qualified, so names never collide."""
        return f"{self.organization.slug}/{self.name}"


class RouteDeployment(models.Model):
    """One place a route can send a request: a provider credential and model,
    with LiteLLM parameters from an allow-list."""

    route = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="deployments")
    position = models.PositiveSmallIntegerField(default=0)
    credential = models.ForeignKey(ProviderCredential, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="deployments")
    model = models.CharField(max_length=200, help_text="The provider's model id, e.g. gpt-4o-mini.")
    litellm_params = models.JSONField(default=dict, blank=True)
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    priority = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(100)],
                                                help_text="Lower is tried first; empty: weighted shuffle.")

    objects = TenantManager("route__organization")

    class Meta:
        ordering = ["route", "position", "id"]

    def __str__(self) -> str:
        return f"{self.route.name}[{self.position}] {self.model}"


class RouteFallback(models.Model):
    """Where a route's requests go, in order, when all its deployments fail."""

    route = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="fallback_links")
    fallback = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    objects = TenantManager("route__organization")

    class Meta:
        ordering = ["route", "position"]
        constraints = [models.UniqueConstraint(fields=["route", "fallback"], name="uniq_route_fallback")]


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BLOCKED = "blocked", "Blocked"
    REVOKED = "revoked", "Revoked"


class KeyKind(models.TextChoices):
    USER = "user", "Issued to people and scripts"
    SERVICE = "service", "The portal's own (evaluations, benchmarks)"


class VirtualKey(BudgetFields):
    """An API key for the gateway. Only its SHA-256 and a display prefix are
    stored; the plaintext is shown once, at creation or rotation. A project's
    service key is the portal's own: its plaintext is derived from the
    portal's secret when needed, never stored either."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="keys")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="keys")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="keys")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="virtual_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    key_prefix = models.CharField(max_length=16)
    allowed_routes = models.ManyToManyField(ModelRoute, blank=True, related_name="keys",
                                            help_text="Empty: every route the key's team may use.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(10_000_000)])
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(1_000_000_000)])
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    kind = models.CharField(max_length=10, choices=KeyKind.choices, default=KeyKind.USER)
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("organization", rows=TeamOrOwn(team="team", owner="owner"))

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at", "-id"], name="key_list_order"),  # the keys page
            models.Index(fields=["organization", "status"]),
            models.Index(fields=["organization", "team"]),
            models.Index(fields=["organization", "project"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}...)"


class KeyGraceHash(models.Model):
    """A rotated-out secret of a key that keeps working until `expires_at`."""

    key = models.ForeignKey(VirtualKey, on_delete=models.CASCADE, related_name="grace_hashes")
    key_hash = models.CharField(max_length=64, unique=True)
    key_prefix = models.CharField(max_length=16)
    expires_at = models.DateTimeField()

    objects = TenantManager("key__organization", rows=TeamOrOwn(team="key__team", owner="key__owner"))


class IdempotencyRecord(models.Model):
    """Remembers an `Idempotency-Key` of a key creation, so that a retried
    request gets the same key record instead of a second key."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    principal = models.CharField(max_length=40)
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    virtual_key = models.ForeignKey(VirtualKey, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TenantManager("organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "principal", "idempotency_key"],
                                               name="uniq_idempotency_key")]


class SyncKind(models.TextChoices):
    KEY = "key", "Virtual key"
    ROUTES = "routes", "Routes and credentials of an organization"
    ORGANIZATION = "organization", "Organization budget and members"
    TEAM = "team", "Team budget"
    PROJECT = "project", "Project budget and tracing"


class SyncOutbox(models.Model):
    """A change the gateway must learn about, written in the same transaction
    as the change itself so that none is lost; pushed right after commit and,
    if that fails, by the `sync` queue with backoff."""

    kind = models.CharField(max_length=20, choices=SyncKind.choices)
    object_id = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [models.Index(fields=["done_at", "next_attempt_at"])]


class UsageRecord(models.Model):
    """One request through the gateway, as the plugin reported it. Written
    in batches by the usage consumer, at most once per request id."""

    request_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField()
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    key = models.ForeignKey(VirtualKey, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    owner_email = models.CharField(max_length=254, blank=True)
    route = models.CharField(max_length=100)
    model_group = models.CharField(max_length=160)
    deployment = models.CharField(max_length=100, blank=True)
    provider_model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms = models.FloatField(default=0)
    status = models.CharField(max_length=10)
    status_code = models.PositiveSmallIntegerField(default=200)
    error_class = models.CharField(max_length=100, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)

    objects = TenantManager("organization", rows=TeamOrOwn(team="key__team", owner="key__owner"), append_only=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["key", "created_at"]),
            # a trace's requests in its project (the agent's tools place scores and search rows by them)
            models.Index(fields=["project", "trace_id"], name="usage_project_trace"),
        ]


class UsageDaily(models.Model):
    """Usage summed per organization, day (UTC), key and route: what the
    usage API and the dashboards read, so they stay fast with millions of
    requests."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    key = models.ForeignKey(VirtualKey, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    owner_email = models.CharField(max_length=254, blank=True)
    route = models.CharField(max_length=100)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms_sum = models.FloatField(default=0)

    objects = TenantManager("organization", rows=TeamOrOwn(team="key__team", owner="key__owner"), append_only=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "day", "key", "route"],
                                               name="uniq_usage_daily")]
        indexes = [models.Index(fields=["organization", "day"]), models.Index(fields=["key", "day"]),
                   models.Index(fields=["project", "day"])]


@dataclass(frozen=True)
class TeamRows:
    """The rule of the rollups that sum many keys of one team: every row for those who see every
    team (`Actor.sees_every_team`), their teams' rows for members. A key never changes team
    (KeyUpdateSerializer), so a row's team is the team of every key summed in it, and this is the
    team half of TeamOrOwn; the other half, a member's own keys in other teams, is read from the
    per-key rollups (gateway.selectors)."""

    def q(self, actor: Actor) -> Q | None:
        return None if actor.sees_every_team() else Q(team__in=list(actor.team_roles()))


class UsageProjectDaily(models.Model):
    """Usage summed per organization, day (UTC), project, team and route, the
    keys summed together: what the project dashboard reads, so that it stays
    fast with a hundred thousand keys. Written with `UsageDaily`, in the same
    transaction, like every rollup."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    route = models.CharField(max_length=100)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms_sum = models.FloatField(default=0)

    objects = TenantManager("organization", rows=TeamRows(), append_only=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "day", "project", "team", "route"],
                                               name="uniq_usage_project_daily")]
        indexes = [models.Index(fields=["project", "day"])]


class UsageSums(models.Model):
    """What every rollup sums."""

    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms_sum = models.FloatField(default=0)

    class Meta:
        abstract = True


class UsageTeamDaily(UsageSums):
    """Usage summed per organization, day (UTC), team and route (no project, no key, no latency
    histogram): the organization's reports by day, route and team (a row per team and route a
    day, however many keys and projects)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    route = models.CharField(max_length=100)

    objects = TenantManager("organization", rows=TeamRows(), append_only=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "day", "team", "route"],
                                               name="uniq_usage_team_daily")]


class UsageKeyDaily(UsageSums):
    """Usage summed per organization, day (UTC) and key, the routes summed together: reports by key
    or user, a project's top keys, and members' reports that need no route (a row per key a day)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    key = models.ForeignKey(VirtualKey, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    owner_email = models.CharField(max_length=254, blank=True)

    objects = TenantManager("organization", rows=TeamOrOwn(team="key__team", owner="key__owner"), append_only=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "day", "key"], name="uniq_usage_key_daily")]
        indexes = [models.Index(fields=["key", "day"]),
                   # a project's top keys from the index alone (an index-only scan)
                   models.Index(fields=["project", "day", "organization", "key", "requests", "cost"],
                                name="usage_key_daily_top_keys")]


# The latency histogram of both rollups (gateway/latency.py): one count per bucket (a key's
# requests of one day and route fit in 32 bits; a project's need not).
for _field in latency.FIELDS:
    UsageDaily.add_to_class(_field, models.IntegerField(default=0))
    UsageProjectDaily.add_to_class(_field, models.BigIntegerField(default=0))
