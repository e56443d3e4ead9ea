"""Gateway objects in the Django admin: read-only for platform staff, with
actions that go through the same services as the API (audit log, push)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from gateway.models import ModelRoute, ProviderCredential, RouteDeployment, SyncOutbox, VirtualKey
from gateway.services import keys
from portal.access import system_actor


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "provider", "secret_fields", "updated_at"]
    list_filter = ["provider", "organization"]
    exclude = ["secrets_encrypted"]


class DeploymentInline(admin.TabularInline):
    model = RouteDeployment
    extra = 0
    fields = ["position", "credential", "model", "litellm_params", "weight", "priority"]

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(ModelRoute)
class ModelRouteAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "is_active", "num_retries", "updated_at"]
    list_filter = ["is_active", "organization"]
    search_fields = ["name"]
    inlines = [DeploymentInline]


def _bulk(verb: str, change: Any) -> Any:
    def run(modeladmin: Any, request: Any, queryset: Any) -> None:
        for key in queryset:
            actor = system_actor(key.organization, f"admin:{request.user.get_username()}", user=request.user)
            try:
                change(actor=actor, key=key)
            except Exception as exc:
                messages.error(request, f"{key}: {exc}")
        messages.success(request, f"{verb}: done.")

    run.__name__ = f"{verb.lower()}_keys"
    run.short_description = f"{verb} the selected keys"  # type: ignore[attr-defined]
    return run


@admin.register(VirtualKey)
class VirtualKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "key_prefix", "organization", "team", "project", "owner", "status", "expires_at",
                    "last_used_at"]
    list_filter = ["status", "organization"]
    search_fields = ["name", "key_prefix", "owner__email"]
    exclude = ["key_hash"]
    actions = [_bulk("Block", keys.key_block), _bulk("Unblock", keys.key_unblock), _bulk("Revoke", keys.key_revoke)]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return obj is None and request.user.is_superuser  # actions need it; the form stays read-only


@admin.register(SyncOutbox)
class SyncOutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "object_id", "created_at", "attempts", "next_attempt_at", "done_at", "last_error"]
    list_filter = ["kind"]
