"""Serializers for credentials, routes and keys."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway import providers
from gateway.models import ROUTE_NAME_VALIDATOR, ModelRoute, ProviderCredential, ProviderType, VirtualKey
from portal.api.serializers import BUDGET_FIELDS, BudgetSerializerMixin, OrgScopedRelatedField, RelatedList
from portal.models import Project, Team

User = get_user_model()
ROUTE_NAME_RE = re.compile(ROUTE_NAME_VALIDATOR.regex)


@extend_schema_field(serializers.CharField(max_length=100))
class RouteNameField(serializers.SlugRelatedField):
    """A route of this organization, by its public name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="name", **kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        actor = self.context.get("actor")
        return ModelRoute.objects.visible_to(actor, "view") if actor else ModelRoute.objects.none()

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not ROUTE_NAME_RE.fullmatch(data):
            self.fail("does_not_exist", slug_name=self.slug_field, value=str(data)[:100].replace("\x00", ""))
        return super().to_internal_value(data)


@extend_schema_field(serializers.EmailField(allow_null=True))
class MemberEmailField(serializers.Field):
    """A member of this organization, by email."""

    default_error_messages = {"unknown": "No member of this organization has this email."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or len(data) > 254 or "\x00" in data:
            self.fail("unknown")
        user = User.objects.filter(email__iexact=data, memberships__organization=self.context["organization"]).first()
        if user is None:
            self.fail("unknown")
        return user

    def to_representation(self, value: Any) -> Any:
        return value.email if value else None


class CredentialSerializer(serializers.ModelSerializer):
    provider = serializers.ChoiceField(choices=ProviderType.choices)
    settings = serializers.DictField(
        child=serializers.CharField(max_length=providers.MAX_VALUE_LENGTH, allow_null=True), required=False,
        help_text="Non-secret settings: api_base, api_version, aws_region_name, vertex_project, vertex_location.")
    secrets = serializers.DictField(
        child=serializers.CharField(max_length=providers.MAX_VALUE_LENGTH, allow_null=True, trim_whitespace=False),
        write_only=True, required=False,
        help_text="Write-only: api_key, aws_access_key_id, ... An update sets the fields it names; null clears one.")
    secret_fields = serializers.ListField(child=serializers.CharField(), read_only=True,
                                          help_text="Which secrets are set (their values are never returned).")

    class Meta:
        model = ProviderCredential
        fields = ["id", "name", "provider", "settings", "secrets", "secret_fields", "created_at", "updated_at"]
        read_only_fields = ["id", "secret_fields", "created_at", "updated_at"]
        validators: list[Any] = []

    def validate_name(self, value: str) -> str:
        qs = ProviderCredential.objects.filter(organization=self.context["organization"], name=value)
        if self.instance is not None:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError("A credential with this name already exists.")
        return value


class DeploymentSerializer(serializers.Serializer):
    credential = OrgScopedRelatedField(ProviderCredential, allow_null=True, required=False, default=None)
    model = serializers.CharField(max_length=200)
    litellm_params = serializers.DictField(required=False, default=dict,
                                           help_text=f"Allowed: {', '.join(sorted(providers.DEPLOYMENT_PARAMS))}.")
    weight = serializers.IntegerField(min_value=1, max_value=1000, default=1)
    priority = serializers.IntegerField(min_value=0, max_value=100, allow_null=True, required=False, default=None)

    def validate_litellm_params(self, value: dict[str, Any]) -> dict[str, Any]:
        from django.core.exceptions import ValidationError as DjangoValidationError

        try:
            return providers.validate_deployment_params(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["litellm_params"]) from None


class RouteSerializer(serializers.ModelSerializer):
    deployments = DeploymentSerializer(many=True, max_length=50)  # type: ignore[call-arg]
    fallbacks = RelatedList(child=RouteNameField(), required=False, max_length=20,
                                      help_text="Route names, tried in order when every deployment fails.")
    allowed_teams = RelatedList(child=OrgScopedRelatedField(Team), required=False, max_length=1000,
                                          help_text="Team ids; empty: every team.")
    model_group = serializers.CharField(read_only=True)

    class Meta:
        model = ModelRoute
        fields = ["id", "name", "description", "is_active", "num_retries", "timeout_seconds",
                  "input_cost_per_million", "output_cost_per_million", "allowed_teams", "deployments",
                  "fallbacks", "model_group", "created_at", "updated_at"]
        read_only_fields = ["id", "model_group", "created_at", "updated_at"]
        validators: list[Any] = []

    def to_representation(self, instance: ModelRoute) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["deployments"] = [
            {"credential": d.credential_id, "model": d.model, "litellm_params": d.litellm_params,
             "weight": d.weight, "priority": d.priority} for d in instance.deployments.all()]
        data["fallbacks"] = [link.fallback.name for link in instance.fallback_links.all()]
        data["allowed_teams"] = sorted(t.pk for t in instance.allowed_teams.all())
        return data

    def validate_deployments(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise serializers.ValidationError("A route needs at least one deployment.")
        return value


class KeySerializer(BudgetSerializerMixin, serializers.ModelSerializer):
    team = OrgScopedRelatedField(Team)
    project = OrgScopedRelatedField(Project)
    owner = MemberEmailField(required=False, allow_null=True)
    allowed_routes = RelatedList(child=RouteNameField(), required=False, max_length=500,
                                           help_text="Route names; empty: every route the team may use.")
    metadata = serializers.DictField(required=False)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = VirtualKey
        fields = ["id", "name", "key_prefix", "status", "team", "project", "owner", "allowed_routes",
                  *BUDGET_FIELDS, "rpm_limit", "tpm_limit", "expires_at", "metadata", "created_by",
                  "created_at", "updated_at", "rotated_at", "revoked_at", "last_used_at"]
        read_only_fields = ["id", "key_prefix", "status", "created_by", "created_at", "updated_at",
                            "rotated_at", "revoked_at", "last_used_at"]

    def to_representation(self, instance: VirtualKey) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["allowed_routes"] = sorted(r.name for r in instance.allowed_routes.all())
        return data

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("The expiry must be in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        team, project = attrs.get("team"), attrs.get("project")
        if team is not None and project is not None and project.team_id != team.pk:
            raise serializers.ValidationError({"project": "The project belongs to another team."})
        return attrs


class KeyUpdateSerializer(KeySerializer):
    """A key cannot move to another team or project."""

    team = serializers.PrimaryKeyRelatedField(read_only=True)  # type: ignore[assignment,var-annotated]
    project = serializers.PrimaryKeyRelatedField(read_only=True)  # type: ignore[assignment,var-annotated]


class ClineSetupSerializer(serializers.Serializer):
    base_url = serializers.URLField()
    api_key = serializers.CharField()
    model = serializers.CharField()
    vscode = serializers.DictField(child=serializers.CharField(),
                                   help_text="The fields of Cline's settings in VS Code, provider LiteLLM.")
    cli_providers_json_path = serializers.CharField()
    cli_providers_json = serializers.DictField(help_text="The content of the Cline CLI's providers.json.")


class KeyIssuedSerializer(KeySerializer):
    key = serializers.CharField(source="plaintext", read_only=True, help_text="The key. Shown once; store it now.")
    cline = ClineSetupSerializer(read_only=True)

    class Meta(KeySerializer.Meta):
        fields = [*KeySerializer.Meta.fields, "key", "cline"]


class RotateSerializer(serializers.Serializer):
    grace_period_seconds = serializers.IntegerField(
        min_value=0, max_value=settings.KEY_ROTATION_MAX_GRACE_SECONDS, default=0,
        help_text="How long the old key keeps working. 0: it stops at once.")
