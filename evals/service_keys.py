"""The portal's own gateway key per project, for judge and benchmark calls:
they go through the gateway like any other use, so they are budgeted,
rate-limited and visible in usage.

The plaintext is never stored: it is derived from the portal's secret, the
key's id and a counter, whenever a worker needs it, and only its SHA-256 is
in the database (like every key). If the secret changes, the next use
rotates the key to the new derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings
from django.db import transaction

from gateway import changes
from gateway.models import KeyKind, KeyStatus, VirtualKey
from portal import audit
from portal.access import system_actor
from portal.models import Project
from portal.tokens import VIRTUAL_KEY_PREFIX, sha256_hex

NAME = "portal evaluations"


def derive(key_id: int) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"portal-service-key:{key_id}".encode(), hashlib.sha256).digest()
    return VIRTUAL_KEY_PREFIX + "svc-" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


@transaction.atomic
def service_key(project: Project) -> str:
    """The plaintext of the project's service key, issued (or re-derived) as
    needed. Call it outside a transaction, so that a new key reaches the
    gateway before it is used."""
    Project.objects.select_for_update().get(pk=project.pk)  # one issuer at a time per project
    key = (VirtualKey.objects
           .filter(project=project, kind=KeyKind.SERVICE, status=KeyStatus.ACTIVE).first())
    actor = system_actor(project.organization, "evaluations")
    if key is None:
        key = VirtualKey.objects.create(organization=project.organization, team=project.team, project=project,
                                        name=NAME, kind=KeyKind.SERVICE, key_hash=f"pending-{project.pk}",
                                        key_prefix="sk-svc-")
        plaintext = derive(key.pk)
        key.key_hash, key.key_prefix = sha256_hex(plaintext), plaintext[:11]
        key.save(update_fields=["key_hash", "key_prefix"])
        audit.record(actor, "key.create", key, after={"name": NAME, "kind": KeyKind.SERVICE})
        changes.key_changed(key.pk)
        return plaintext
    plaintext = derive(key.pk)
    if key.key_hash != sha256_hex(plaintext):  # the portal's secret changed
        key.key_hash, key.key_prefix = sha256_hex(plaintext), plaintext[:11]
        key.save(update_fields=["key_hash", "key_prefix"])
        audit.record(actor, "key.rotate", key, after={"reason": "portal secret changed"})
        changes.key_changed(key.pk)
    return plaintext
