"""The portal's own gateway key per project, for judge and benchmark calls:
they go through the gateway like any other use, so they are budgeted,
rate-limited and visible in usage.

The plaintext is never stored: it is derived from the portal's secret and
the key's id whenever a worker needs it, and only its SHA-256 is in the
database (like every key). If the secret changes, the next use
rotates the key to the new derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings
from django.db import transaction

from gateway.models import KeyKind, KeyStatus, VirtualKey
from gateway.services import keys
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
    needed, through the key service like any key (so every gateway backend
    learns it). Call it outside a transaction, so that a new key reaches the
    gateway before it is used."""
    Project.objects.select_for_update().get(pk=project.pk)  # one issuer at a time per project
    key = VirtualKey.objects.filter(project=project, kind=KeyKind.SERVICE, status=KeyStatus.ACTIVE).first()
    actor = system_actor(project.organization, "evaluations")
    if key is None:
        key = keys.service_key_create(actor=actor, project=project, name=NAME, secret_for=derive)
        return derive(key.pk)
    plaintext = derive(key.pk)
    if key.key_hash != sha256_hex(plaintext):  # the portal's secret changed
        keys.service_key_rederive(actor=actor, key=key, plaintext=plaintext, reason="portal secret changed")
    return plaintext
