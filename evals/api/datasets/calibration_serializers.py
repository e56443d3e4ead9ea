"""Bodies of the labels and calibrations endpoints: human labels, the judge's agreement report,
calibration requests and runs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from evals.models import Dataset, DatasetItem, EvalRun, HumanLabel
from evals.services import calibration


class HumanLabelSerializer(serializers.ModelSerializer):
    trace_id = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    item = serializers.PrimaryKeyRelatedField(source="dataset_item", queryset=DatasetItem.objects.none(),
                                              required=False, allow_null=True,
                                              help_text="A dataset item of this project (instead of a trace).")
    label = serializers.CharField(max_length=100,  # type: ignore[assignment]
                                  help_text="A number in the score's range, true/false, or one of the evaluator's "
                                            "labels.")

    class Meta:
        model = HumanLabel
        fields = ["id", "trace_id", "item", "label", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        project = self.context.get("project")
        if project is not None:
            fields["item"].queryset = DatasetItem.objects.filter(dataset__project=project)  # type: ignore[attr-defined]
        return fields


class BaselineSerializer(serializers.Serializer):
    label = serializers.CharField(allow_null=True,  # type: ignore[assignment]
                                  help_text="The most common expected label.")
    accuracy = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True)


class DisagreementSerializer(serializers.Serializer):
    subject = serializers.CharField(help_text="A trace id, or item:<item id>.")
    expected = serializers.CharField()
    judged = serializers.CharField()
    comment = serializers.CharField()


class AgreementSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Labels with a judgement.")
    labels = serializers.ListField(child=serializers.CharField())
    accuracy = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null when undefined (chance "
                                                              "agreement is 1: everything is one same label).")
    baseline = BaselineSerializer(help_text="Always answering the most common expected label.")
    confusion_matrix = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()),
                                             help_text="Rows: expected label; columns: the judge's, in `labels` order.")
    unscored = serializers.IntegerField(help_text="Labels without a usable judgement.")
    versions = serializers.DictField(child=serializers.IntegerField(),
                                     help_text="Judgements used, per evaluator version.")
    disagreements = DisagreementSerializer(many=True)


class CalibrationRequestSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.none(),
                                                 help_text="Each item's expected_output is its expected label.")
    concurrency = serializers.IntegerField(min_value=1, max_value=16, default=4, help_text="Judge calls at once.")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        project = self.context.get("project")
        if project is not None:
            fields["dataset"].queryset = Dataset.objects.filter(project=project)  # type: ignore[attr-defined]
        return fields


class CalibrationSerializer(serializers.ModelSerializer):
    """A calibration run: the evaluator's current version judging a dataset's labelled items."""

    dataset = serializers.SerializerMethodField()
    evaluator_version = serializers.IntegerField(source="evaluator_version.version", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = EvalRun
        fields = ["id", "dataset", "evaluator_version", "status", "total", "processed", "scored", "failed",
                  "progress", "judge_cost", "distribution", "stop_reason", "error", "duration_ms", "created_at",
                  "started_at", "finished_at"]
        read_only_fields = fields

    def get_dataset(self, obj: EvalRun) -> int | None:
        return calibration.calibration_dataset_id(getattr(obj, "subject", None))

    def get_progress(self, obj: EvalRun) -> float | None:
        if obj.status in ("succeeded", "partial", "failed"):
            return 1.0
        return round(obj.processed / obj.total, 3) if obj.total else None


class CalibrationDetailSerializer(CalibrationSerializer):
    report = serializers.SerializerMethodField()

    class Meta(CalibrationSerializer.Meta):
        fields = [*CalibrationSerializer.Meta.fields, "report"]
        read_only_fields = fields

    @extend_schema_field(AgreementSerializer)
    def get_report(self, obj: EvalRun) -> dict[str, Any]:
        return calibration.calibration_report(obj)
