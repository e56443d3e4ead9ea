"""A key's secret and the gateway: a gateway that keeps secrets itself learns
a new one inside the writing transaction, a replaced one is remembered (so
the gateway says "rotated", and stops it when its grace ends)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from gateway import backends, changes
from gateway.models import KeyGraceHash, VirtualKey
from portal.tokens import DISPLAY_PREFIX_LENGTH, NewSecret, sha256_hex


def tell_gateway_the_secret(key: VirtualKey, plaintext: str) -> None:
    """A gateway that stores the secret's hash itself (litellm-admin) must
    learn the plaintext now, inside the transaction: if it cannot, the key is
    rolled back (`gateway.backends.GatewayError`)."""
    backends.backend().register_secret(key, plaintext)


def replace_secret(key: VirtualKey, secret: NewSecret, *, grace_end: dt.datetime, now: dt.datetime) -> None:
    """The key's secret becomes `secret`. The old secret is remembered even
    without a grace period, so that the gateway can tell its holder "rotated"
    rather than "unknown key", and a gateway that keeps secrets itself deletes it."""
    KeyGraceHash.objects.create(key=key, key_hash=key.key_hash, key_prefix=key.key_prefix, expires_at=grace_end)
    key.key_hash, key.key_prefix, key.rotated_at = secret.digest, secret.display_prefix, now
    key.save(update_fields=["key_hash", "key_prefix", "rotated_at", "updated_at"])
    tell_gateway_the_secret(key, secret.plaintext)


def known_secret(plaintext: str) -> NewSecret:
    return NewSecret(plaintext, sha256_hex(plaintext), plaintext[:DISPLAY_PREFIX_LENGTH])


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
