"""The audit log: one entry per change, written in the same transaction as the change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import models

from portal.access import Actor
from portal.models import AuditLogEntry

MASK = "********"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(instance: models.Model, fields: Iterable[str], **extra: Any) -> dict[str, Any]:
    """The audited state of an object: plain field values (foreign keys as
    ids), plus any extra values the caller computed (m2m lists, masks)."""
    state = {}
    for name in fields:
        f = instance._meta.get_field(name)
        attname = f.attname if isinstance(f, models.ForeignKey) else name
        state[name] = _jsonable(getattr(instance, attname))
    state.update({k: _jsonable(v) for k, v in extra.items()})
    return state


def record(actor: Actor, action: str, target: models.Model, *, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None) -> AuditLogEntry:
    return AuditLogEntry.objects.create(
        organization=actor.organization,
        actor=actor.user,
        actor_token=actor.token,
        actor_label=actor.label[:300],
        action=action,
        target_type=target._meta.model_name or "",
        target_id=str(target.pk),
        target_repr=str(target)[:300],
        before=before,
        after=after,
        ip_address=actor.ip_address,
    )
