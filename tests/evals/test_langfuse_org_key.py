"""Deleting an organization's Langfuse key goes through an audited service:
the audit log names who did it, and holds no secret."""

from __future__ import annotations

import json

import pytest

from evals.models import LangfuseOrgKey
from portal.models import AuditLogEntry
from tests.factories import Tenant

SECRET = "sk-lf-org-secret-value"


def org_key(t: Tenant) -> LangfuseOrgKey:
    key = LangfuseOrgKey(organization=t.org, host="https://langfuse.example", public_key="pk-lf-org")
    key.set_secret_key(SECRET)
    key.save()
    return key


@pytest.mark.django_db
def test_deleting_the_org_key_is_audited_with_its_actor_and_without_its_secret(acme: Tenant) -> None:
    key = org_key(acme)
    assert acme.client("member").delete(acme.url("langfuse/")).status_code == 403
    assert not AuditLogEntry.objects.filter(action="langfuse_org_key.delete").exists()
    assert acme.client("owner").delete(acme.url("langfuse/")).status_code == 204
    assert not LangfuseOrgKey.objects.filter(pk=key.pk).exists()
    entry = AuditLogEntry.objects.get(action="langfuse_org_key.delete")
    assert (entry.organization_id, entry.actor, entry.target_id) == (acme.org.pk, acme.users["owner"], str(key.pk))
    assert entry.before == {"host": "https://langfuse.example", "public_key": "pk-lf-org", "secret_key": "********"}
    stored = json.dumps([entry.before, entry.after, entry.target_repr, entry.actor_label])
    assert SECRET not in stored and key.secret_encrypted not in stored
