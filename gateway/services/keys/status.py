"""A key's status: block, unblock, revoke (final), and revoking the keys of
someone who leaves."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from gateway import changes
from gateway.models import KeyStatus, VirtualKey
from gateway.services.keys.rules import check_may_write, key_state
from portal import audit
from portal.access import Actor
from portal.exceptions import Conflict


def _locked(key: VirtualKey) -> VirtualKey:
    """The key locked for the change, with what the audit snapshots and the API's answer read (its
    routes, owner and creator) loaded alongside: a revocation, whose push the proxies wait for, makes
    two queries here instead of six."""
    return (VirtualKey.objects.select_for_update(of=("self",)).select_related("project", "owner", "created_by")
            .prefetch_related("allowed_routes").get(pk=key.pk))


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
