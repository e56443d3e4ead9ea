"""Bodies of the datasets and items endpoints: datasets, items, and the requests and results of
importing, building from traces, pushing to and pulling from Langfuse."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from evals.models import Dataset, DatasetItem
from evals.services import datasets
from evals.services.datasets import MAX_BUILD_ITEMS, WriteResult


class DatasetSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    item_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "langfuse_name", "item_count", "created_at", "updated_at"]
        read_only_fields = ["id", "langfuse_name", "item_count", "created_at", "updated_at"]
        validators: list[Any] = []


class DatasetItemSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(max_length=100, required=False,
                                        help_text="Stable id, also the item's id in Langfuse. Generated if not given; "
                                                  "cannot change.")
    input = serializers.JSONField()
    expected_output = serializers.JSONField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, help_text="A JSON object. For judge calibration, "
                                                              "`output` is the answer the judge sees.")

    class Meta:
        model = DatasetItem
        fields = ["id", "external_id", "input", "expected_output", "metadata", "source_trace_id", "created_at"]
        read_only_fields = ["id", "source_trace_id", "created_at"]
        validators: list[Any] = []


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class TraceFiltersSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=20)
    user_id = serializers.CharField(max_length=200, required=False)
    environment = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=20)
    metadata = serializers.DictField(child=serializers.CharField(max_length=500), required=False,
                                     help_text="Metadata keys and values a trace must have (all of them).")

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError(f"Unknown filters: {', '.join(map(str, unknown))[:200]}.")
        return super().to_internal_value(data)


class BuildRequestSerializer(serializers.Serializer):
    from_time = serializers.DateTimeField(required=False, help_text="Traces from (default: the earliest).")
    to_time = serializers.DateTimeField(required=False, help_text="Traces before (default: now).")
    filters = TraceFiltersSerializer(required=False)
    max_items = serializers.IntegerField(min_value=1, max_value=MAX_BUILD_ITEMS, default=100,
                                         help_text=f"Up to {datasets.INLINE_ITEMS} are added at once; more on a "
                                                   "worker (the answer is 202).")
    output_as = serializers.ChoiceField(
        choices=[("expected_output", "The trace's output becomes the expected output"),
                 ("metadata", "The trace's output goes to metadata.output (to label the items yourself)")],
        default="expected_output")


class BuildResultSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    considered = serializers.IntegerField(help_text="Traces read.")
    skipped = serializers.IntegerField(help_text="Matching traces without input, or too large.")
    notes = serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(examples=[OpenApiExample("The linked Langfuse dataset", value={}, request_only=True)])
class LangfuseNameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False,
                                 help_text="The Langfuse dataset (default: the linked one, else the dataset's name).")


class PushFailureSerializer(serializers.Serializer):
    id = serializers.CharField()
    error = serializers.CharField()


class PushResultSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    langfuse_name = serializers.CharField()
    pushed = serializers.IntegerField()
    failed = PushFailureSerializer(many=True, help_text="Items Langfuse refused (the others were pushed).")


class PullResultSerializer(serializers.Serializer):
    langfuse_name = serializers.CharField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Archived items and items without input.")


def result_data(result: WriteResult, *fields: str) -> dict[str, Any]:
    return {name: getattr(result, name) for name in fields}
