"""Writes to virtual keys: issue, edit, rotate with a grace period, block,
unblock, revoke. The plaintext of a key exists only in the return value of
`key_create` and `key_rotate`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from gateway import backends, changes
from gateway.cline import cline_setup
from gateway.models import IdempotencyRecord, KeyGraceHash, KeyKind, KeyStatus, ModelRoute, VirtualKey
from portal import audit
from portal.access import Actor
from portal.exceptions import Conflict
from portal.models import Membership, OrgRole, Project
from portal.tokens import DISPLAY_PREFIX_LENGTH, VIRTUAL_KEY_PREFIX, NewSecret, new_secret, sha256_hex

KEY_FIELDS = ("name", "team", "project", "owner", "status", "max_budget", "soft_budget", "budget_period",
              "rpm_limit", "tpm_limit", "expires_at", "key_prefix")
EDITABLE = ("name", "owner", "max_budget", "soft_budget", "budget_period", "rpm_limit", "tpm_limit",
            "expires_at", "metadata")
MAX_METADATA_BYTES = 4096


@dataclass
class IssuedKey:
    key: VirtualKey
    plaintext: str
    cline: dict[str, Any]


def key_state(key: VirtualKey) -> dict[str, Any]:
    return audit.snapshot(key, KEY_FIELDS, allowed_routes=sorted(r.name for r in key.allowed_routes.all()))


def check_may_write(actor: Actor, *, team_id: int, owner_id: int | None, admin_only: bool = False) -> None:
    """Team managers write any key of the team; members only their own keys
    in their own teams, and never block or unblock."""
    if actor.manages_team(team_id):
        return
    own = actor.user is not None and owner_id == actor.user.pk
    if not admin_only and actor.at_least(OrgRole.MEMBER) and actor.in_team(team_id) and own:
        return
    raise PermissionDenied("This key can be changed by its owner or by an admin of its team.")


def usable_routes(team_id: int, organization_id: int) -> QuerySet[ModelRoute]:
    return (ModelRoute.objects.filter(organization_id=organization_id)
            .filter(Q(allowed_teams=None) | Q(allowed_teams=team_id)).distinct().order_by("name"))


def _check(key: VirtualKey, routes: list[ModelRoute] | None, *, check_expiry: bool) -> None:
    if key.project.team_id != key.team_id:
        raise ValidationError({"project": "The project belongs to another team."})
    if key.owner_id is not None and not Membership.objects.filter(
            organization_id=key.organization_id, user_id=key.owner_id).exists():
        raise ValidationError({"owner": "The owner must be a member of the organization."})
    if key.expires_at is not None and key.expires_at <= timezone.now() and check_expiry:
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if key.max_budget is not None and key.soft_budget is not None and key.soft_budget > key.max_budget:
        raise ValidationError({"soft_budget": "The soft budget cannot be above the max budget."})
    if routes is not None:
        usable = set(usable_routes(key.team_id, key.organization_id).values_list("pk", flat=True))
        refused = sorted(r.name for r in routes if r.pk not in usable)
        if refused:
            raise ValidationError({"allowed_routes": [f"Route '{n}' is not available to this team." for n in refused]})
    if len(repr(key.metadata)) > MAX_METADATA_BYTES:
        raise ValidationError({"metadata": f"At most {MAX_METADATA_BYTES} bytes."})


def default_model(key: VirtualKey, requested: list[ModelRoute] | None = None) -> str:
    if requested:
        return requested[0].name
    route = key.allowed_routes.order_by("name").first() or usable_routes(key.team_id, key.organization_id).first()
    return route.name if route else ""


def _tell_gateway_the_secret(key: VirtualKey, plaintext: str) -> None:
    """A gateway that stores the secret's hash itself (litellm-admin) must
    learn the plaintext now, inside the transaction: if it cannot, the key is
    rolled back (`gateway.backends.GatewayError`)."""
    backends.backend().register_secret(key, plaintext)


@transaction.atomic
def key_create(*, actor: Actor, data: dict[str, Any]) -> IssuedKey:
    team, project = data["team"], data["project"]
    owner = data.get("owner")
    if owner is None and not actor.manages_team(team.pk):
        owner = actor.user  # a member's key is their own
    check_may_write(actor, team_id=team.pk, owner_id=owner.pk if owner else None)
    secret = new_secret(VIRTUAL_KEY_PREFIX)
    key = VirtualKey(organization=actor.organization, team=team, project=project, owner=owner,
                     key_hash=secret.digest, key_prefix=secret.display_prefix, created_by=actor.user,
                     **{k: v for k, v in data.items() if k in EDITABLE and k != "owner"})
    routes = list(data.get("allowed_routes") or [])
    _check(key, routes, check_expiry=True)
    key.full_clean(exclude=["key_hash"])
    key.save()
    key.allowed_routes.set(routes)
    _tell_gateway_the_secret(key, secret.plaintext)
    audit.record(actor, "key.create", key, after=key_state(key))
    changes.key_changed(key.pk)
    return IssuedKey(key, secret.plaintext, cline_setup(api_key=secret.plaintext, model=default_model(key, routes)))


LIMIT_FIELDS = ("max_budget", "soft_budget", "rpm_limit", "tpm_limit", "expires_at")
LIFT = ("Only an admin of the key's team can raise or remove its {field}; you may only lower it "
        "(an empty value means no limit).")


def _check_no_lift(actor: Actor, key: VirtualKey, data: dict[str, Any]) -> None:
    """Limits are set by the team's managers: anyone else may only lower the
    limits of their own key (or rename it). No limit (null) is the highest
    limit, so setting one to null raises it; a later expiry, a change of
    budget period and a wider route list are raises too."""
    if actor.manages_team(key.team_id):
        return
    for field in LIMIT_FIELDS:
        if field not in data:
            continue
        old, new = getattr(key, field), data[field]
        if old is not None and (new is None or new > old):
            raise PermissionDenied(LIFT.format(field=field))
    has_budget = key.max_budget is not None or key.soft_budget is not None
    if "budget_period" in data and data["budget_period"] != key.budget_period and has_budget:
        raise PermissionDenied("Only an admin of the key's team can change its budget_period (a change of period "
                               "changes the limit).")
    if "allowed_routes" in data:
        old_routes = {r.pk for r in key.allowed_routes.all()}
        new_routes = {r.pk for r in data["allowed_routes"]}
        if not new_routes and old_routes or old_routes and not new_routes <= old_routes:
            raise PermissionDenied("Only an admin of the key's team can add to its allowed_routes; you may only "
                                   "remove routes (an empty list means every route).")


def _locked(key: VirtualKey) -> VirtualKey:
    return VirtualKey.objects.select_for_update().select_related("project").get(pk=key.pk)


@transaction.atomic
def key_update(*, actor: Actor, key: VirtualKey, data: dict[str, Any]) -> VirtualKey:
    key = _locked(key)
    check_may_write(actor, team_id=key.team_id, owner_id=key.owner_id)
    if key.status == KeyStatus.REVOKED:
        raise Conflict("This key is revoked and cannot change.")
    for moved in ("team", "project"):
        if moved in data and data[moved].pk != getattr(key, f"{moved}_id"):
            raise ValidationError({moved: "A key cannot move; issue a new key instead."})
    if "owner" in data and data["owner"] != key.owner and not actor.manages_team(key.team_id):
        raise PermissionDenied("Only an admin of the key's team can give it to someone else.")
    _check_no_lift(actor, key, data)
    before = key_state(key)
    for name in EDITABLE:
        if name in data:
            setattr(key, name, data[name])
    routes = list(data["allowed_routes"]) if "allowed_routes" in data else None
    _check(key, routes, check_expiry="expires_at" in data)
    key.full_clean(exclude=["key_hash"])
    key.save()
    if routes is not None:
        key.allowed_routes.set(routes)
    audit.record(actor, "key.update", key, before=before, after=key_state(key))
    changes.key_changed(key.pk)
    return key


def _replace_secret(key: VirtualKey, secret: NewSecret, *, grace_end: dt.datetime, now: dt.datetime) -> None:
    """The key's secret becomes `secret`. The old secret is remembered even
    without a grace period, so that the gateway can tell its holder "rotated"
    rather than "unknown key", and a gateway that keeps secrets itself deletes it."""
    KeyGraceHash.objects.create(key=key, key_hash=key.key_hash, key_prefix=key.key_prefix, expires_at=grace_end)
    key.key_hash, key.key_prefix, key.rotated_at = secret.digest, secret.display_prefix, now
    key.save(update_fields=["key_hash", "key_prefix", "rotated_at", "updated_at"])
    _tell_gateway_the_secret(key, secret.plaintext)


@transaction.atomic
def key_rotate(*, actor: Actor, key: VirtualKey, grace_period_seconds: int = 0) -> IssuedKey:
    """A new secret for the same key (same id, budgets, usage). The old
    secret keeps working for `grace_period_seconds`, never past the key's expiry."""
    key = _locked(key)
    check_may_write(actor, team_id=key.team_id, owner_id=key.owner_id)
    if key.status == KeyStatus.REVOKED:
        raise Conflict("This key is revoked; issue a new key instead.")
    if not 0 <= grace_period_seconds <= settings.KEY_ROTATION_MAX_GRACE_SECONDS:
        raise ValidationError({"grace_period_seconds":
                               f"Between 0 and {settings.KEY_ROTATION_MAX_GRACE_SECONDS} seconds."})
    before = key_state(key)
    now = timezone.now()
    grace_end = now + dt.timedelta(seconds=grace_period_seconds)
    if key.expires_at is not None:
        grace_end = min(grace_end, key.expires_at)
    secret = new_secret(VIRTUAL_KEY_PREFIX)
    _replace_secret(key, secret, grace_end=grace_end, now=now)
    after = key_state(key) | {"grace_period_seconds": grace_period_seconds}
    audit.record(actor, "key.rotate", key, before=before, after=after)
    changes.key_changed(key.pk)
    return IssuedKey(key, secret.plaintext, cline_setup(api_key=secret.plaintext, model=default_model(key)))


def _set_status(actor: Actor, key: VirtualKey, status: str, action: str, *, admin_only: bool,
                reason: str | None = None) -> VirtualKey:
    key = _locked(key)
    check_may_write(actor, team_id=key.team_id, owner_id=key.owner_id, admin_only=admin_only)
    if key.status == status:
        return key
    if key.status == KeyStatus.REVOKED:
        raise Conflict("This key is revoked; revocation is final.")
    before = key_state(key)
    key.status = status
    fields = ["status", "updated_at"]
    if status == KeyStatus.REVOKED:
        key.revoked_at = timezone.now()
        fields.append("revoked_at")
    key.save(update_fields=fields)
    after = key_state(key) | ({"reason": reason} if reason else {})
    audit.record(actor, action, key, before=before, after=after)
    changes.key_changed(key.pk)
    return key


@transaction.atomic
def key_revoke(*, actor: Actor, key: VirtualKey) -> VirtualKey:
    return _set_status(actor, key, KeyStatus.REVOKED, "key.revoke", admin_only=False)


@transaction.atomic
def keys_revoke_owned_by(*, actor: Actor, user: Any, reason: str, team_id: int | None = None) -> list[int]:
    """Revoke the keys `user` owns in the actor's organization (or in one team
    of it): the person is leaving, so the keys stop on every proxy at once, each
    with its own audit entry. Keys the person issued to others are not theirs
    and stay. The caller has checked that the actor may remove the person."""
    owned = VirtualKey.objects.filter(organization=actor.organization, owner=user).exclude(status=KeyStatus.REVOKED)
    if team_id is not None:
        owned = owned.filter(team_id=team_id)
    ids = list(owned.order_by("pk").values_list("pk", flat=True))
    for key in VirtualKey.objects.filter(pk__in=ids).order_by("pk"):
        check_may_write(actor, team_id=key.team_id, owner_id=key.owner_id)
        _set_status(actor, key, KeyStatus.REVOKED, "key.revoke", admin_only=False, reason=reason)
    return ids


@transaction.atomic
def key_block(*, actor: Actor, key: VirtualKey) -> VirtualKey:
    return _set_status(actor, key, KeyStatus.BLOCKED, "key.block", admin_only=True)


@transaction.atomic
def key_unblock(*, actor: Actor, key: VirtualKey) -> VirtualKey:
    return _set_status(actor, key, KeyStatus.ACTIVE, "key.unblock", admin_only=True)


@dataclass
class IdempotentResult:
    key: VirtualKey
    issued: IssuedKey | None  # None when this is a replay of an earlier request


def key_create_idempotent(*, actor: Actor, data: dict[str, Any], idempotency_key: str,
                          request_hash: str) -> IdempotentResult:
    """`key_create`, once per (principal, Idempotency-Key). A retry with the
    same body gets the same key record back (without its plaintext, which
    was shown once); the same Idempotency-Key with another body is refused."""
    principal = f"token:{actor.token.pk}" if actor.token else f"user:{getattr(actor.user, 'pk', None)}"
    lookup = {"organization": actor.organization, "principal": principal, "idempotency_key": idempotency_key}
    cutoff = timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    for _ in range(2):
        existing = IdempotencyRecord.objects.filter(**lookup).select_related("virtual_key").first()
        if existing is not None and existing.created_at < cutoff:
            existing.delete()
            existing = None
        if existing is not None:
            if existing.request_hash != request_hash:
                raise Conflict("This Idempotency-Key was already used with a different request body.")
            return IdempotentResult(existing.virtual_key, None)
        try:
            with transaction.atomic():
                issued = key_create(actor=actor, data=data)
                IdempotencyRecord.objects.create(**lookup, request_hash=request_hash, virtual_key=issued.key)
            return IdempotentResult(issued.key, issued)
        except IntegrityError:
            continue  # a concurrent request with the same key won; replay it
    raise Conflict("A request with this Idempotency-Key is in progress; retry.")


# The portal's own keys ----------------------------------------------------------

def _known_secret(plaintext: str) -> NewSecret:
    return NewSecret(plaintext, sha256_hex(plaintext), plaintext[:DISPLAY_PREFIX_LENGTH])


@transaction.atomic
def service_key_create(*, actor: Actor, project: Project, name: str, secret_for: Callable[[int], str]) -> VirtualKey:
    """The portal's own key of a project (kind SERVICE, no owner), for the
    workers' judge and benchmark calls. Its plaintext is `secret_for(key id)`,
    derived whenever it is needed and never stored, so the key is saved
    first (under a placeholder hash) to have its id."""
    actor.require_team_manager(project.team_id)
    key = VirtualKey.objects.create(organization=project.organization, team=project.team, project=project, name=name,
                                    kind=KeyKind.SERVICE, key_hash=f"pending-{project.pk}", key_prefix="sk-svc-")
    secret = _known_secret(secret_for(key.pk))
    key.key_hash, key.key_prefix = secret.digest, secret.display_prefix
    key.save(update_fields=["key_hash", "key_prefix", "updated_at"])
    _tell_gateway_the_secret(key, secret.plaintext)
    audit.record(actor, "key.create", key, after=key_state(key) | {"kind": KeyKind.SERVICE})
    changes.key_changed(key.pk)
    return key


@transaction.atomic
def service_key_rederive(*, actor: Actor, key: VirtualKey, plaintext: str, reason: str) -> VirtualKey:
    """The service key's secret becomes `plaintext` (its derivation changed,
    e.g. with the portal's secret); the old one stops at once."""
    actor.require_team_manager(key.team_id)
    key = _locked(key)
    before, now = key_state(key), timezone.now()
    _replace_secret(key, _known_secret(plaintext), grace_end=now, now=now)
    audit.record(actor, "key.rotate", key, before=before, after=key_state(key) | {"reason": reason})
    changes.key_changed(key.pk)
    return key


def keys_push_ended_graces(*, lookback: dt.timedelta) -> int:
    """A gateway that does not end grace periods itself (litellm-admin: a
    rotated-out secret works until it is deleted there, which the next push of
    its key does) gets a push of every key whose grace period ended within
    `lookback`, through the outbox, which retries. Returns how many keys were queued."""
    if backends.backend().ends_graces_itself:
        return 0
    now = timezone.now()
    ended = KeyGraceHash.objects.filter(expires_at__lte=now, expires_at__gt=now - lookback)
    key_ids = sorted(set(ended.values_list("key_id", flat=True)))
    with transaction.atomic():
        for key_id in key_ids:
            changes.key_changed(key_id)
    return len(key_ids)
