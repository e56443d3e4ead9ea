"""Writes to tenancy objects. Every function is atomic and records what it
changed in the audit log; permission checks beyond the role gate happen here
so that the API, the web pages and the commands share them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from gateway import changes
from portal import audit, outbound
from portal.access import Actor, system_actor
from portal.models import (
    ROLE_RANK,
    ApiToken,
    Membership,
    Organization,
    OrgRole,
    Project,
    Team,
    TeamMembership,
    TokenScope,
)
from portal.tokens import API_TOKEN_PREFIX, new_secret

BUDGET_FIELDS = ("max_budget", "soft_budget", "budget_period")
ORG_FIELDS = ("slug", "name", *BUDGET_FIELDS, "alert_emails", "alert_webhook_url")
TEAM_FIELDS = ("name", "description", *BUDGET_FIELDS)
PROJECT_FIELDS = ("name", "description", "team", *BUDGET_FIELDS)
User = get_user_model()


def _apply(instance: Any, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for name, value in data.items():
        if name not in allowed:
            raise ValidationError({name: "This field cannot be changed."})
        setattr(instance, name, value)


def _check_budget(instance: Any) -> None:
    max_b, soft = instance.max_budget, instance.soft_budget
    if max_b is not None and soft is not None and soft > max_b:
        raise ValidationError({"soft_budget": "The soft budget cannot be above the max budget."})


def user_get_or_create(*, email: str) -> Any:
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(username=email[:150], email=email)
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


# Organizations -------------------------------------------------------------

@transaction.atomic
def organization_create(*, slug: str, name: str, owner_email: str, label: str = "bootstrap") -> Organization:
    org = Organization(slug=slug, name=name)
    org.full_clean()
    org.save()
    changes.organization_changed(org.pk)
    owner = user_get_or_create(email=owner_email)
    membership = Membership.objects.create(organization=org, user=owner, role=OrgRole.OWNER)
    actor = system_actor(org, label)
    audit.record(actor, "organization.create", org, after=audit.snapshot(org, ORG_FIELDS))
    audit.record(actor, "membership.create", membership, after={"user": owner.email, "role": OrgRole.OWNER})
    return org


@transaction.atomic
def organization_update(*, actor: Actor, data: dict[str, Any]) -> Organization:
    actor.require(OrgRole.ADMIN)
    org = Organization.objects.select_for_update().get(pk=actor.organization.pk)
    before = audit.snapshot(org, ORG_FIELDS)
    _apply(org, data, ("name", *BUDGET_FIELDS, "alert_emails", "alert_webhook_url"))
    if org.alert_webhook_url:
        outbound.validate("alert_webhook_url", org.alert_webhook_url)
    _check_alert_emails(org.alert_emails)
    _check_budget(org)
    org.full_clean()
    org.save()
    audit.record(actor, "organization.update", org, before=before, after=audit.snapshot(org, ORG_FIELDS))
    changes.organization_changed(org.pk)
    return org


def _check_alert_emails(value: str) -> None:
    """Every comma-separated address is one (alerts go to each: a typo would lose them silently)."""
    for address in (part.strip() for part in value.split(",")):
        try:
            if address:
                validate_email(address)
        except ValidationError:
            raise ValidationError({"alert_emails": f"'{address[:100]}' is not an e-mail address; "
                                                   "separate addresses with commas."}) from None


# Organization members ------------------------------------------------------

def _membership_state(m: Membership) -> dict[str, Any]:
    return {"user": m.user.email, "role": m.role}


def _guard_owner_change(actor: Actor, *roles: str) -> None:
    if OrgRole.OWNER in roles and not actor.at_least(OrgRole.OWNER):
        raise PermissionDenied("Only an owner can grant or take away the owner role.")


def _guard_self(actor: Actor, membership: Membership) -> None:
    if actor.user is not None and membership.user_id == actor.user.pk and actor.label_override is None:
        raise PermissionDenied("You cannot change or remove your own membership; ask another admin.")


def _guard_last_owner(org: Organization, membership: Membership) -> None:
    owners = Membership.objects.filter(organization=org, role=OrgRole.OWNER).exclude(pk=membership.pk)
    if membership.role == OrgRole.OWNER and not owners.exists():
        raise ValidationError({"role": "An organization needs at least one owner."})


@transaction.atomic
def member_add(*, actor: Actor, email: str, role: str) -> Membership:
    actor.require(OrgRole.ADMIN)
    _guard_owner_change(actor, role)
    user = user_get_or_create(email=email)
    if Membership.objects.filter(organization=actor.organization, user=user).exists():
        raise ValidationError({"email": "This user is already a member of the organization."})
    membership = Membership.objects.create(organization=actor.organization, user=user, role=role)
    audit.record(actor, "membership.create", membership, after=_membership_state(membership))
    changes.organization_changed(actor.organization.pk)
    return membership


@transaction.atomic
def member_update(*, actor: Actor, membership: Membership, role: str) -> Membership:
    actor.require(OrgRole.ADMIN)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _guard_self(actor, membership)
    _guard_owner_change(actor, role, membership.role)
    before = _membership_state(membership)
    if role != OrgRole.OWNER:
        _guard_last_owner(actor.organization, membership)
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(actor, "membership.update", membership, before=before, after=_membership_state(membership))
    return membership


@transaction.atomic
def member_remove(*, actor: Actor, membership: Membership) -> None:
    actor.require(OrgRole.ADMIN)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _guard_self(actor, membership)
    _guard_owner_change(actor, membership.role)
    _guard_last_owner(actor.organization, membership)
    audit.record(actor, "membership.delete", membership, before=_membership_state(membership))
    _revoke_keys_of(actor, membership.user, reason="owner removed from the organization")
    TeamMembership.objects.filter(team__organization=actor.organization, user=membership.user).delete()
    ApiToken.objects.filter(organization=actor.organization, user=membership.user, revoked_at=None).update(
        revoked_at=timezone.now())
    membership.delete()
    changes.organization_changed(actor.organization.pk)


def _revoke_keys_of(actor: Actor, user: Any, *, reason: str, team_id: int | None = None) -> None:
    """Someone who leaves cannot keep using the keys they own there: they are
    revoked through the key service (audit entry, push to every proxy).
    Keys they issued to others stay with their owners."""
    from gateway.services.keys import keys_revoke_owned_by

    keys_revoke_owned_by(actor=actor, user=user, team_id=team_id, reason=reason)


# Teams ---------------------------------------------------------------------

@transaction.atomic
def team_create(*, actor: Actor, data: dict[str, Any]) -> Team:
    actor.require(OrgRole.ADMIN)
    team = Team(organization=actor.organization)
    _apply(team, data, TEAM_FIELDS)
    _check_budget(team)
    team.full_clean()
    team.save()
    audit.record(actor, "team.create", team, after=audit.snapshot(team, TEAM_FIELDS))
    changes.team_changed(team.pk)
    return team


@transaction.atomic
def team_update(*, actor: Actor, team: Team, data: dict[str, Any]) -> Team:
    actor.require(OrgRole.ADMIN)
    team = Team.objects.select_for_update().get(pk=team.pk)
    before = audit.snapshot(team, TEAM_FIELDS)
    _apply(team, data, TEAM_FIELDS)
    _check_budget(team)
    team.full_clean()
    team.save()
    audit.record(actor, "team.update", team, before=before, after=audit.snapshot(team, TEAM_FIELDS))
    changes.team_changed(team.pk)
    return team


@transaction.atomic
def team_delete(*, actor: Actor, team: Team) -> None:
    actor.require(OrgRole.ADMIN)
    if team.projects.exists():
        raise ValidationError({"team": "The team still has projects; delete or move them first."})
    audit.record(actor, "team.delete", team, before=audit.snapshot(team, TEAM_FIELDS))
    changes.team_changed(team.pk)
    changes.routes_changed(actor.organization.pk)  # routes open to this team change too
    team.delete()


def _team_member_state(tm: TeamMembership) -> dict[str, Any]:
    return {"team": tm.team_id, "user": tm.user.email, "role": tm.role}


@transaction.atomic
def team_member_add(*, actor: Actor, team: Team, email: str, role: str) -> TeamMembership:
    actor.require_team_manager(team.pk)
    user = User.objects.filter(email__iexact=email, memberships__organization=actor.organization).first()
    if user is None:
        raise ValidationError({"email": "No member of this organization has this email; add them to the organization first."})
    if TeamMembership.objects.filter(team=team, user=user).exists():
        raise ValidationError({"email": "This user is already in the team."})
    tm = TeamMembership.objects.create(team=team, user=user, role=role)
    audit.record(actor, "team_membership.create", tm, after=_team_member_state(tm))
    return tm


@transaction.atomic
def team_member_update(*, actor: Actor, membership: TeamMembership, role: str) -> TeamMembership:
    actor.require_team_manager(membership.team_id)
    before = _team_member_state(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(actor, "team_membership.update", membership, before=before, after=_team_member_state(membership))
    return membership


@transaction.atomic
def team_member_remove(*, actor: Actor, membership: TeamMembership) -> None:
    actor.require_team_manager(membership.team_id)
    audit.record(actor, "team_membership.delete", membership, before=_team_member_state(membership))
    _revoke_keys_of(actor, membership.user, team_id=membership.team_id, reason="owner removed from the team")
    membership.delete()


# Projects ------------------------------------------------------------------

@transaction.atomic
def project_create(*, actor: Actor, data: dict[str, Any]) -> Project:
    team = data.get("team")
    if team is None or team.organization_id != actor.organization.pk:
        raise ValidationError({"team": "Choose a team of this organization."})
    actor.require_team_manager(team.pk)
    project = Project(organization=actor.organization)
    _apply(project, data, PROJECT_FIELDS)
    _check_budget(project)
    project.full_clean()
    project.save()
    audit.record(actor, "project.create", project, after=audit.snapshot(project, PROJECT_FIELDS))
    changes.project_changed(project.pk)
    return project


@transaction.atomic
def project_update(*, actor: Actor, project: Project, data: dict[str, Any]) -> Project:
    project = Project.objects.select_for_update().get(pk=project.pk)
    actor.require_team_manager(project.team_id)
    if "team" in data and data["team"].pk != project.team_id:
        raise ValidationError({"team": "A project cannot move to another team."})
    before = audit.snapshot(project, PROJECT_FIELDS)
    _apply(project, data, PROJECT_FIELDS)
    _check_budget(project)
    project.full_clean()
    project.save()
    audit.record(actor, "project.update", project, before=before, after=audit.snapshot(project, PROJECT_FIELDS))
    changes.project_changed(project.pk)
    return project


@transaction.atomic
def project_delete(*, actor: Actor, project: Project) -> None:
    actor.require_team_manager(project.team_id)
    if project.keys.exclude(status="revoked").exists():
        raise ValidationError({"project": "The project still has keys that are not revoked; revoke them first."})
    audit.record(actor, "project.delete", project, before=audit.snapshot(project, PROJECT_FIELDS))
    for key_id in project.keys.values_list("pk", flat=True):
        changes.key_changed(key_id)
    changes.project_changed(project.pk)
    project.keys.all().delete()
    _delete_evaluation_history(project)
    project.delete()


def _delete_evaluation_history(project: Project) -> None:
    """A run keeps the evaluator version it judged with, a benchmark its dataset (PROTECT: neither can
    be deleted on its own); when the whole project goes they go first, or the cascade from the project
    stops at them (a ProtectedError, a 500 in the API and the web UI)."""
    from evals.models import Benchmark, EvalRun

    Benchmark.objects.filter(project=project).delete()
    EvalRun.objects.filter(project=project).delete()


# API tokens ----------------------------------------------------------------

TOKEN_FIELDS = ("name", "prefix", "role", "scope", "expires_at", "revoked_at")


@transaction.atomic
def api_token_create(*, actor: Actor, name: str, role: str, scope: str = TokenScope.FULL,
                     expires_at: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """A token for the acting user. Returns it with its plaintext, which is
    not kept anywhere."""
    if actor.user is None:
        raise PermissionDenied("Only a user can own an API token.")
    if ROLE_RANK[OrgRole(role)] > ROLE_RANK[OrgRole(actor.role)]:
        raise ValidationError({"role": f"A token's role cannot be above your own ('{actor.role}')."})
    if actor.token is not None and actor.scope != TokenScope.FULL:
        raise PermissionDenied("A key-scoped token cannot create tokens.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    secret = new_secret(API_TOKEN_PREFIX)
    token = ApiToken.objects.create(organization=actor.organization, user=actor.user, name=name,
                                    token_hash=secret.digest, prefix=secret.display_prefix, role=role,
                                    scope=scope, expires_at=expires_at)
    audit.record(actor, "api_token.create", token, after=audit.snapshot(token, TOKEN_FIELDS))
    return token, secret.plaintext


@transaction.atomic
def api_token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    if token.user_id != getattr(actor.user, "pk", None):
        actor.require(OrgRole.ADMIN)
    if token.revoked_at is None:
        before = audit.snapshot(token, TOKEN_FIELDS)
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "api_token.revoke", token, before=before, after=audit.snapshot(token, TOKEN_FIELDS))
    return token


def bootstrap_organization(*, slug: str, owner_email: str, name: str = "") -> tuple[Organization, str]:
    """A new organization with its owner and an owner API token (plaintext returned)."""
    with transaction.atomic():
        org = organization_create(slug=slug, name=name or slug, owner_email=owner_email)
        owner = Membership.objects.get(organization=org, role=OrgRole.OWNER).user
        actor = system_actor(org, "bootstrap", user=owner)
        actor.role = OrgRole.OWNER
        _, plaintext = api_token_create(actor=actor, name="bootstrap", role=OrgRole.OWNER)
    return org, plaintext
