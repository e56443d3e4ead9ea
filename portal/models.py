"""Tenancy: organizations (the tenants), teams, projects, memberships with
roles, per-user API tokens, and the audit log."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.scoping import OwnBelow, TenantManager

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and hyphens, not starting or ending with a hyphen.",
)


def optional_amount() -> models.DecimalField[Decimal | None, Decimal | None]:
    """A USD amount (12 digits, 4 after the point): optional, never negative."""
    return models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True,
                               validators=[MinValueValidator(Decimal(0))])


class BudgetPeriod(models.TextChoices):
    NONE = "none", "No reset"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class OrgRole(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {OrgRole.VIEWER: 10, OrgRole.MEMBER: 20, OrgRole.ADMIN: 40, OrgRole.OWNER: 50}


class TeamRole(models.TextChoices):
    ADMIN = "admin", "Team admin"
    MEMBER = "member", "Team member"


class BudgetFields(models.Model):
    """A spend ceiling in USD that resets each budget period. The soft budget
    only alerts; the max budget refuses further requests."""

    max_budget = optional_amount()
    soft_budget = optional_amount()
    budget_period = models.CharField(max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.NONE)

    class Meta:
        abstract = True


class Organization(BudgetFields):
    """A tenant. Everything else belongs to exactly one organization, and no
    row of one organization is ever visible to another."""

    slug = models.CharField(max_length=50, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    alert_emails = models.CharField(max_length=1000, blank=True,
                                    help_text="Comma-separated; empty: the organization's owners and admins.")
    alert_webhook_url = models.URLField(max_length=500, blank=True,
                                        help_text="Receives a JSON POST for every budget or evaluation alert.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("pk")

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's role in an organization."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=OrgRole.choices, default=OrgRole.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Team(BudgetFields):
    """A group of people inside an organization; owns projects and keys."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_team_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """A user's role in a team. Team admins manage the team's members,
    projects and keys."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=10, choices=TeamRole.choices, default=TeamRole.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("team__organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="uniq_team_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class Project(BudgetFields):
    """A unit of work of one team: keys are issued for a project, and a
    project may have its own Langfuse project for traces."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager("organization")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_project_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TokenScope(models.TextChoices):
    FULL = "full", "Everything the role allows"
    KEYS = "keys", "Only issue, rotate, revoke and read keys"


class ApiToken(models.Model):
    """A user's bearer token for the REST API, bound to one organization.
    Only the SHA-256 of the token is stored. Its role never exceeds its
    user's current role in the organization."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    role = models.CharField(max_length=10, choices=OrgRole.choices)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.FULL)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("organization", rows=OwnBelow(role="admin", owner="user"))

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "user"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class AuditLogEntry(models.Model):
    """Who changed what, when: one row per change to keys, routes,
    credentials, budgets and memberships, with secrets masked."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_log")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    actor_token = models.ForeignKey(ApiToken, on_delete=models.SET_NULL, null=True, related_name="+")
    actor_label = models.CharField(max_length=300)
    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=50)
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=300)
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)
    ip_address = models.GenericIPAddressField(null=True)

    objects = TenantManager("organization", role="admin", append_only=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["organization", "target_type", "target_id"]),
        ]
        constraints = [models.CheckConstraint(condition=~Q(action=""), name="audit_action_set")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id} by {self.actor_label}"


class Invitation(models.Model):
    """An invitation to an organization, sent by e-mail: a link with a single-use,
    expiring token (only its SHA-256 is stored) that lets the invited person set
    a password. The membership exists from the start; the invitation is how its
    user gets in."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=10, choices=OrgRole.choices)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    team_role = models.CharField(max_length=10, choices=TeamRole.choices, blank=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                   related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager("organization")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.organization}"

    @property
    def status(self) -> str:
        """pending, accepted, revoked or expired."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "pending"
