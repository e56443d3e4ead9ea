"""Serializers for tenancy. They parse and shape; services write."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.models import (
    ApiToken,
    AuditLogEntry,
    Membership,
    Organization,
    OrgRole,
    Project,
    Team,
    TeamMembership,
    TeamRole,
    TokenScope,
)


@extend_schema_field(OpenApiTypes.INT)
class OrgScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key that accepts only objects the actor in the serializer's
    context sees (`visible_to`); another tenant's id reads as "does not exist"."""

    def __init__(self, model: type[Model], **kwargs: Any) -> None:
        self.model = model
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        actor = self.context.get("actor")
        manager: Any = self.model._default_manager  # a TenantManager (the model is a tenant model)
        return manager.none() if actor is None else manager.visible_to(actor, "view")


class RelatedList(serializers.ListField):
    """A list of related objects, read from a many-to-many manager."""

    def to_representation(self, data: Any) -> list[Any]:
        return super().to_representation(data.all() if hasattr(data, "all") else data)


class BudgetSerializerMixin(serializers.Serializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        instance = getattr(self, "instance", None)
        max_b = attrs.get("max_budget", getattr(instance, "max_budget", None))
        soft = attrs.get("soft_budget", getattr(instance, "soft_budget", None))
        if max_b is not None and soft is not None and soft > max_b:
            raise serializers.ValidationError({"soft_budget": "The soft budget cannot be above the max budget."})
        return attrs


BUDGET_FIELDS = ["max_budget", "soft_budget", "budget_period"]


class OrganizationSerializer(BudgetSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["slug", "name", *BUDGET_FIELDS, "alert_emails", "alert_webhook_url", "created_at"]
        read_only_fields = ["slug", "created_at"]


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", max_length=254)
    role = serializers.ChoiceField(choices=OrgRole.choices)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]
        read_only_fields = ["id", "created_at"]


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=OrgRole.choices)


class TeamSerializer(BudgetSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "description", *BUDGET_FIELDS, "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []

    def validate_name(self, value: str) -> str:
        qs = Team.objects.filter(organization=self.context["organization"], name=value)
        if self.instance is not None:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError("A team with this name already exists.")
        return value


class TeamMemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", max_length=254)
    role = serializers.ChoiceField(choices=TeamRole.choices, default=TeamRole.MEMBER)

    class Meta:
        model = TeamMembership
        fields = ["id", "email", "role", "created_at"]
        read_only_fields = ["id", "created_at"]


class TeamMemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=TeamRole.choices)


class ProjectSerializer(BudgetSerializerMixin, serializers.ModelSerializer):
    team = OrgScopedRelatedField(Team)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "team", *BUDGET_FIELDS, "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []

    def validate_name(self, value: str) -> str:
        qs = Project.objects.filter(organization=self.context["organization"], name=value)
        if self.instance is not None:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError("A project with this name already exists.")
        return value


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.EmailField(source="user.email", read_only=True)
    role = serializers.ChoiceField(choices=OrgRole.choices)
    scope = serializers.ChoiceField(choices=TokenScope.choices, default=TokenScope.FULL)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "user", "role", "scope", "created_at", "expires_at",
                  "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "user", "created_at", "last_used_at", "revoked_at"]

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("The expiry must be in the future.")
        return value


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(source="plaintext", read_only=True, help_text="The token. Shown once; store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class AuditLogEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLogEntry
        fields = ["id", "created_at", "actor_label", "action", "target_type", "target_id", "target_repr",
                  "before", "after", "ip_address"]
        read_only_fields = fields
