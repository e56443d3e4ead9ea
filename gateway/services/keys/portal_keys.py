"""The portal's own keys (kind SERVICE): one per project for the workers'
judge and benchmark calls, issued and re-derived like any key."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from gateway import changes
from gateway.models import KeyKind, VirtualKey
from gateway.services.keys.rules import key_state, locked
from gateway.services.keys.secret import known_secret, replace_secret, tell_gateway_the_secret
from portal import audit
from portal.access import Actor
from portal.models import Project


@transaction.atomic
def service_key_create(*, actor: Actor, project: Project, name: str, secret_for: Callable[[int], str]) -> VirtualKey:
    """The portal's own key of a project (kind SERVICE, no owner), for the
    workers' judge and benchmark calls. Its plaintext is `secret_for(key id)`,
    derived whenever it is needed and never stored, so the key is saved
    first (under a placeholder hash) to have its id."""
    actor.require_team_manager(project.team_id)
    key = VirtualKey.objects.create(organization=project.organization, team=project.team, project=project, name=name,
                                    kind=KeyKind.SERVICE, key_hash=f"pending-{project.pk}", key_prefix="sk-svc-")
    secret = known_secret(secret_for(key.pk))
    key.key_hash, key.key_prefix = secret.digest, secret.display_prefix
    key.save(update_fields=["key_hash", "key_prefix", "updated_at"])
    tell_gateway_the_secret(key, secret.plaintext)
    audit.record(actor, "key.create", key, after=key_state(key) | {"kind": KeyKind.SERVICE})
    changes.key_changed(key.pk)
    return key


@transaction.atomic
def service_key_rederive(*, actor: Actor, key: VirtualKey, plaintext: str, reason: str) -> VirtualKey:
    """The service key's secret becomes `plaintext` (its derivation changed,
    e.g. with the portal's secret); the old one stops at once."""
    actor.require_team_manager(key.team_id)
    key = locked(key)
    before, now = key_state(key), timezone.now()
    replace_secret(key, known_secret(plaintext), grace_end=now, now=now)
    audit.record(actor, "key.rotate", key, before=before, after=key_state(key) | {"reason": reason})
    changes.key_changed(key.pk)
    return key
