"""Issuing and editing keys: create (also once per Idempotency-Key), update,
rotate with a grace period. The plaintext of a key exists only in the return
value of `key_create` and `key_rotate`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from gateway import changes
from gateway.cline import cline_setup
from gateway.models import IdempotencyRecord, KeyStatus, VirtualKey
from gateway.services.keys.rules import (
    EDITABLE,
    check_key,
    check_may_write,
    check_no_lift,
    default_model,
    key_state,
    locked,
)
from gateway.services.keys.secret import replace_secret, tell_gateway_the_secret
from portal import audit
from portal.access import Actor
from portal.exceptions import Conflict
from portal.tokens import VIRTUAL_KEY_PREFIX, new_secret


@dataclass
class IssuedKey:
    key: VirtualKey
    plaintext: str
    cline: dict[str, Any]


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
    check_key(key, routes, check_expiry=True)
    key.full_clean(exclude=["key_hash"])
    key.save()
    key.allowed_routes.set(routes)
    tell_gateway_the_secret(key, secret.plaintext)
    audit.record(actor, "key.create", key, after=key_state(key))
    changes.key_changed(key.pk)
    return IssuedKey(key, secret.plaintext, cline_setup(api_key=secret.plaintext, model=default_model(key, routes)))


@transaction.atomic
def key_update(*, actor: Actor, key: VirtualKey, data: dict[str, Any]) -> VirtualKey:
    key = locked(key)
    check_may_write(actor, team_id=key.team_id, owner_id=key.owner_id)
    if key.status == KeyStatus.REVOKED:
        raise Conflict("This key is revoked and cannot change.")
    for moved in ("team", "project"):
        if moved in data and data[moved].pk != getattr(key, f"{moved}_id"):
            raise ValidationError({moved: "A key cannot move; issue a new key instead."})
    if "owner" in data and data["owner"] != key.owner and not actor.manages_team(key.team_id):
        raise PermissionDenied("Only an admin of the key's team can give it to someone else.")
    check_no_lift(actor, key, data)
    before = key_state(key)
    for name in EDITABLE:
        if name in data:
            setattr(key, name, data[name])
    routes = list(data["allowed_routes"]) if "allowed_routes" in data else None
    check_key(key, routes, check_expiry="expires_at" in data)
    key.full_clean(exclude=["key_hash"])
    key.save()
    if routes is not None:
        key.allowed_routes.set(routes)
    audit.record(actor, "key.update", key, before=before, after=key_state(key))
    changes.key_changed(key.pk)
    return key


@transaction.atomic
def key_rotate(*, actor: Actor, key: VirtualKey, grace_period_seconds: int = 0) -> IssuedKey:
    """A new secret for the same key (same id, budgets, usage). The old
    secret keeps working for `grace_period_seconds`, never past the key's expiry."""
    key = locked(key)
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
    replace_secret(key, secret, grace_end=grace_end, now=now)
    after = key_state(key) | {"grace_period_seconds": grace_period_seconds}
    audit.record(actor, "key.rotate", key, before=before, after=after)
    changes.key_changed(key.pk)
    return IssuedKey(key, secret.plaintext, cline_setup(api_key=secret.plaintext, model=default_model(key)))


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
