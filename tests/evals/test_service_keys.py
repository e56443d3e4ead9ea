"""The portal's own key per project (judge and benchmark calls) is issued and
re-derived through the key service like any key: every gateway backend learns
it (litellm-admin: LiteLLM is told its plaintext), and the audit log has it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from evals.service_keys import NAME, derive, service_key
from gateway.models import KeyGraceHash, KeyKind, VirtualKey
from gateway.plugin import contract
from portal.models import AuditLogEntry
from tests.factories import Tenant
from tests.gateway.litellm_admin_fake import FakeLiteLLM, fake, sha

pytestmark = pytest.mark.django_db(transaction=True)  # pushes run after commit, as in production
__all__ = ["fake"]  # a fixture


def service(t: Tenant) -> VirtualKey:
    return VirtualKey.objects.get(project=t.project, kind=KeyKind.SERVICE)


def test_litellm_learns_a_new_service_key_and_its_audit_entry_holds_no_secret(fake: FakeLiteLLM,
                                                                                acme: Tenant) -> None:
    plaintext = service_key(acme.project)
    key = service(acme)
    assert plaintext == derive(key.pk) and key.key_hash == sha(plaintext) and key.name == NAME
    generate = fake.bodies("/key/generate")[-1]
    assert generate["key"] == plaintext and generate["team_id"] == f"portal-team-{acme.team.pk}"
    assert generate["metadata"]["portal_key_id"] == key.pk and generate["models"] == ["acme/chat"]
    assert fake.keys[sha(plaintext)]["blocked"] is False  # and the push after commit found it there
    entry = AuditLogEntry.objects.get(action="key.create", target_id=str(key.pk))
    assert entry.actor_label == "evaluations" and entry.after["kind"] == KeyKind.SERVICE
    assert plaintext not in json.dumps(entry.after) and key.key_hash not in json.dumps(entry.after)
    generated = len(fake.bodies("/key/generate"))
    assert service_key(acme.project) == plaintext  # the same key the next time, not a new one
    assert len(fake.bodies("/key/generate")) == generated and service(acme).pk == key.pk


def test_a_changed_portal_secret_rederives_the_key_and_litellm_drops_the_old_secret(
        fake: FakeLiteLLM, acme: Tenant, settings: Any) -> None:
    old = service_key(acme.project)
    settings.SECRET_KEY = django_settings.SECRET_KEY + "-rotated"
    new = service_key(acme.project)
    assert new != old and new == derive(service(acme).pk)
    assert fake.bodies("/key/generate")[-1]["key"] == new
    assert sha(new) in fake.keys and sha(old) not in fake.keys  # the old derivation stops at once
    entry = AuditLogEntry.objects.get(action="key.rotate", target_id=str(service(acme).pk))
    assert entry.after["reason"] == "portal secret changed" and new not in json.dumps(entry.after)


def test_in_managed_mode_the_old_derivation_stops_working_too(acme: Tenant, settings: Any) -> None:
    old = service_key(acme.project)
    settings.SECRET_KEY = django_settings.SECRET_KEY + "-rotated"
    new = service_key(acme.project)
    r = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    assert json.loads(r.get(contract.hash_doc(sha(new))))["grace_until"] is None
    # Before, the old secret's pointer stayed in Redis as a current secret, and kept working.
    assert json.loads(r.get(contract.hash_doc(sha(old))))["grace_until"] is not None
    assert KeyGraceHash.objects.filter(key=service(acme), key_hash=sha(old)).exists()
