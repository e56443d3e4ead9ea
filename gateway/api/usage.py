"""`GET /api/v1/orgs/{org}/usage/`: usage and spend, from the daily rollups."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.models import UsageDaily
from gateway.selectors import GROUPS, usage_report
from portal.api.base import OrgScopedViewSet

MAX_DAYS = 366


class UsageQuerySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(GROUPS), default="day")
    to = serializers.DateField(required=False, help_text="Last day (UTC), inclusive. Default: today.")
    team = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    project = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    key = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    route = serializers.CharField(required=False, max_length=100)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False, help_text="First day (UTC). Default: 30 days ago.")
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        today = timezone.now().date()
        attrs.setdefault("to", today)
        # 30 days back, or from the first representable day (to=0001-01-05 is valid input, not a 500)
        attrs.setdefault("from", attrs["to"] - dt.timedelta(days=min(29, (attrs["to"] - dt.date.min).days)))
        if attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"from": "Must not be after 'to'."})
        if (attrs["to"] - attrs["from"]).days >= MAX_DAYS:
            raise serializers.ValidationError({"from": f"At most {MAX_DAYS} days at a time."})
        return attrs


class UsageRowSerializer(serializers.Serializer):
    group = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]  # a declared field, not Field.label
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a declared field, not Serializer.errors
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.FloatField()
    avg_latency_ms = serializers.FloatField()


class UsageSerializer(serializers.Serializer):
    group_by = serializers.CharField()
    results = UsageRowSerializer(many=True)
    totals = UsageRowSerializer()


class UsageViewSet(OrgScopedViewSet):
    """Requests, tokens and spend per day, route, key, project, team or user."""

    queryset = UsageDaily.objects.all()
    pagination_class = None
    filter_backends: list[Any] = []

    @extend_schema(parameters=[UsageQuerySerializer], responses=UsageSerializer)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = usage_report(self.actor, query.validated_data)
        return Response(report)

