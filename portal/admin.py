"""The Django admin, for platform staff. Tenancy objects are editable here;
every change is written to the organization's audit log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from portal import audit
from portal.access import system_actor
from portal.models import ApiToken, AuditLogEntry, Membership, Organization, Project, Team, TeamMembership


class AuditedAdmin(admin.ModelAdmin):
    def _org(self, obj: Any) -> Organization:
        return obj if isinstance(obj, Organization) else getattr(obj, "organization", None) or obj.team.organization

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        actor = system_actor(self._org(obj), f"admin:{request.user.get_username()}", user=request.user)
        changed = {f: str(form.cleaned_data.get(f)) for f in form.changed_data}
        audit.record(actor, f"{obj._meta.model_name}.{'update' if change else 'create'}.admin", obj, after=changed)

    def delete_model(self, request: Any, obj: Any) -> None:
        org = self._org(obj)
        if not isinstance(obj, Organization):
            actor = system_actor(org, f"admin:{request.user.get_username()}", user=request.user)
            audit.record(actor, f"{obj._meta.model_name}.delete.admin", obj)
        super().delete_model(request, obj)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(AuditedAdmin):
    list_display = ["slug", "name", "max_budget", "budget_period", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        return ["slug"] if obj else []


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "organization", "max_budget", "budget_period"]
    list_filter = ["organization"]
    search_fields = ["name"]


@admin.register(Project)
class ProjectAdmin(AuditedAdmin):
    list_display = ["name", "organization", "team", "max_budget", "budget_period"]
    list_filter = ["organization"]
    search_fields = ["name"]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "organization", "role"]
    list_filter = ["role", "organization"]
    search_fields = ["user__email"]
    raw_id_fields = ["user"]


@admin.register(TeamMembership)
class TeamMembershipAdmin(AuditedAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["role"]
    search_fields = ["user__email", "team__name"]
    raw_id_fields = ["user"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "organization", "role", "scope", "last_used_at", "revoked_at"]
    list_filter = ["role", "scope", "organization"]
    search_fields = ["name", "prefix", "user__email"]
    exclude = ["token_hash"]
    readonly_fields = ["prefix", "user", "organization", "role", "scope", "created_at", "last_used_at", "expires_at"]

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organization", "actor_label", "action", "target_type", "target_repr"]
    list_filter = ["action", "target_type", "organization"]
    search_fields = ["actor_label", "target_repr", "target_id"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
