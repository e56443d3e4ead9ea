"""Writes to provider credentials."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from gateway import changes, providers
from gateway.models import ProviderCredential
from portal import audit, crypto
from portal.access import Actor
from portal.models import OrgRole


def credential_state(cred: ProviderCredential) -> dict[str, Any]:
    return audit.snapshot(cred, ("name", "provider", "settings"),
                          secrets={name: audit.MASK for name in cred.secret_fields})


def credential_secrets(cred: ProviderCredential) -> dict[str, str]:
    return crypto.decrypt_json(cred.secrets_encrypted)


def _store_secrets(cred: ProviderCredential, secrets: dict[str, str]) -> None:
    cred.secrets_encrypted = crypto.encrypt_json(secrets)
    cred.secret_fields = sorted(secrets)


@transaction.atomic
def credential_create(*, actor: Actor, name: str, provider: str, settings: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> ProviderCredential:
    actor.require(OrgRole.ADMIN)
    cred = ProviderCredential(organization=actor.organization, name=name, provider=provider,
                              settings=providers.validate_settings(provider, settings or {}))
    _store_secrets(cred, providers.merge_secrets(provider, {}, secrets or {}))
    cred.full_clean()
    cred.save()
    audit.record(actor, "credential.create", cred, after=credential_state(cred))
    return cred


@transaction.atomic
def credential_update(*, actor: Actor, credential: ProviderCredential, data: dict[str, Any]) -> ProviderCredential:
    actor.require(OrgRole.ADMIN)
    cred = ProviderCredential.objects.select_for_update().get(pk=credential.pk)
    before = credential_state(cred)
    if "provider" in data and data["provider"] != cred.provider:
        raise ValidationError({"provider": "The provider of a credential cannot change; create a new one."})
    if "name" in data:
        cred.name = data["name"]
    if "settings" in data:
        new_settings = providers.validate_settings(cred.provider, data["settings"])
        moved = new_settings.get("api_base") != cred.settings.get("api_base")
        if moved and cred.secret_fields and set(cred.secret_fields) - set(data.get("secrets") or {}):
            # The stored secrets go only to the endpoint they were entered for.
            raise ValidationError({"secrets": "Enter the secrets again when you change the api_base."})
        cred.settings = new_settings
    if "secrets" in data:
        _store_secrets(cred, providers.merge_secrets(cred.provider, credential_secrets(cred), data["secrets"]))
    cred.full_clean()
    cred.save()
    audit.record(actor, "credential.update", cred, before=before, after=credential_state(cred))
    changes.routes_changed(actor.organization.pk)
    return cred


@transaction.atomic
def credential_delete(*, actor: Actor, credential: ProviderCredential) -> None:
    actor.require(OrgRole.ADMIN)
    used_by = sorted({d.route.name for d in credential.deployments.select_related("route")})
    if used_by:
        raise ValidationError({"credential": f"Used by the routes {', '.join(used_by)}; change them first."})
    audit.record(actor, "credential.delete", credential, before=credential_state(credential))
    credential.delete()
