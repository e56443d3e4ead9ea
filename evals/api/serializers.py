from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from evals.models import (
    EvalReport,
    EvalRun,
    EvalSchedule,
    EvalScore,
    Evaluator,
    EvaluatorVersion,
    LangfuseConnection,
    LangfuseOrgKey,
    OutputMode,
    ScoreType,
)
from evals.templates import TEMPLATES
from gateway.models import ROUTE_NAME_VALIDATOR
from portal.scoping import TenantQuerySet


def project_rows(context: Mapping[str, Any], model: Any) -> TenantQuerySet[Any] | None:
    """The rows of `model` of the project in the serializer's context that its actor sees (None: no project)."""
    project = context.get("project")
    if project is None:
        return None
    return model.objects.visible_to(context["actor"], "view").filter(project=project)



class LangfuseConnectionSerializer(serializers.ModelSerializer):
    secret_key = serializers.CharField(write_only=True, required=False, max_length=300, trim_whitespace=True,
                                       help_text="Write-only. Optional on update (the stored one is kept).")

    class Meta:
        model = LangfuseConnection
        fields = ["host", "public_key", "secret_key", "enabled", "server_version", "langfuse_project_id",
                  "langfuse_project_name", "checked_at", "updated_at"]
        read_only_fields = ["server_version", "langfuse_project_id", "langfuse_project_name", "checked_at",
                            "updated_at"]


class LangfuseOrgKeySerializer(serializers.ModelSerializer):
    secret_key = serializers.CharField(write_only=True, max_length=300)

    class Meta:
        model = LangfuseOrgKey
        fields = ["host", "public_key", "secret_key", "created_at"]
        read_only_fields = ["created_at"]


@extend_schema_field(serializers.CharField(max_length=100))
class RouteName(serializers.SlugRelatedField):
    """A route of this organization, by name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="name", **kwargs)

    def get_queryset(self) -> Any:
        from gateway.models import ModelRoute

        actor = self.context.get("actor")
        return ModelRoute.objects.visible_to(actor, "view") if actor else ModelRoute.objects.none()

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not re.fullmatch(ROUTE_NAME_VALIDATOR.regex, data):
            self.fail("does_not_exist", slug_name="name", value=str(data)[:100].replace("\x00", ""))
        return super().to_internal_value(data)


class EvaluatorVersionSerializer(serializers.ModelSerializer):
    judge_route = serializers.CharField(source="judge_route.name", read_only=True)

    class Meta:
        model = EvaluatorVersion
        fields = ["version", "judge_route", "template_key", "prompt_template", "variables", "score_type",
                  "min_value", "max_value", "labels", "pass_threshold", "pass_labels", "output_mode", "created_at"]
        read_only_fields = fields


class EvaluatorSerializer(serializers.ModelSerializer):
    """An evaluator with its current version. Writing any definition field makes a new version."""

    name = serializers.RegexField(r"^[A-Za-z0-9_ .()-]{1,35}$", max_length=35,
                                  error_messages={"invalid": "1-35 letters, digits, spaces, _ . ( ) - "
                                                             "(Langfuse's rule for score names)."})
    template = serializers.ChoiceField(choices=sorted(TEMPLATES), required=False, write_only=True,
                                       help_text="Start from a built-in template.")
    judge_route = RouteName(required=False)
    prompt_template = serializers.CharField(max_length=20_000, required=False, trim_whitespace=False)
    variables = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    score_type = serializers.ChoiceField(choices=ScoreType.choices, required=False)
    min_value = serializers.FloatField(required=False, allow_null=True)
    max_value = serializers.FloatField(required=False, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=50)
    pass_threshold = serializers.FloatField(required=False, allow_null=True)
    pass_labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=50)
    output_mode = serializers.ChoiceField(choices=OutputMode.choices, required=False)
    current = serializers.SerializerMethodField()

    class Meta:
        model = Evaluator
        fields = ["id", "name", "description", "archived", "template", "judge_route", "prompt_template",
                  "variables", "score_type", "min_value", "max_value", "labels", "pass_threshold", "pass_labels",
                  "output_mode", "current", "created_at"]
        read_only_fields = ["id", "current", "created_at"]
        extra_kwargs = {f: {"write_only": True} for f in (
            "judge_route", "prompt_template", "variables", "score_type", "min_value", "max_value", "labels",
            "pass_threshold", "pass_labels", "output_mode")}
        validators: list[Any] = []

    @extend_schema_field(EvaluatorVersionSerializer)
    def get_current(self, obj: Evaluator) -> dict[str, Any] | None:
        version = obj.current
        return EvaluatorVersionSerializer(version).data if version else None


class ScheduleSerializer(serializers.ModelSerializer):
    evaluator = serializers.PrimaryKeyRelatedField(queryset=Evaluator.objects.none())
    filters = serializers.DictField(required=False)
    max_judge_spend = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=0, required=False,
                                               allow_null=True)

    class Meta:
        model = EvalSchedule
        fields = ["id", "name", "evaluator", "enabled", "cron", "interval_seconds", "filters", "sampling_rate",
                  "max_traces", "max_judge_spend", "concurrency", "initial_lookback_hours", "last_window_end", "alert_below",
                  "alert_drop", "created_at"]
        read_only_fields = ["id", "last_window_end", "created_at"]
        validators: list[Any] = []

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        evaluators = project_rows(self.context, Evaluator)
        if evaluators is not None:
            fields["evaluator"].queryset = evaluators  # type: ignore[attr-defined]
        return fields


class RunSerializer(serializers.ModelSerializer):
    evaluator = serializers.CharField(source="evaluator_version.evaluator.name", read_only=True)
    evaluator_version = serializers.IntegerField(source="evaluator_version.version", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = EvalRun
        fields = ["id", "schedule", "evaluator", "evaluator_version", "status", "window_start", "window_end",
                  "considered", "sampled", "scored", "already_scored", "failed", "processed", "total", "progress",
                  "judge_cost", "mean_score", "distribution", "stop_reason", "error", "duration_ms", "created_at",
                  "started_at", "finished_at"]
        read_only_fields = fields

    def get_progress(self, obj: EvalRun) -> float | None:
        if obj.status in ("succeeded", "partial", "failed"):
            return 1.0
        return round(obj.processed / obj.total, 3) if obj.total else None


class RunRequestSerializer(serializers.Serializer):
    evaluator = serializers.PrimaryKeyRelatedField(queryset=Evaluator.objects.none())
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField(required=False)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        evaluators = project_rows(self.context, Evaluator)
        if evaluators is not None:
            fields["evaluator"].queryset = evaluators  # type: ignore[attr-defined]
        return fields


class ScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvalScore
        fields = ["trace_id", "status", "value", "label", "comment", "error", "judge_cost", "latency_ms",
                  "langfuse_score_id", "pushed_at", "scored_at"]
        read_only_fields = fields


class ReportSerializer(serializers.ModelSerializer):
    route = serializers.CharField(source="route.name", read_only=True)

    class Meta:
        model = EvalReport
        fields = ["run", "route", "status", "groups", "content", "error", "cost", "created_at", "finished_at"]
        read_only_fields = fields


@extend_schema_serializer(examples=[OpenApiExample("Through the route chat", value={"route": "chat"},
                                                    request_only=True)])
class ReportRequestSerializer(serializers.Serializer):
    route = RouteName()
