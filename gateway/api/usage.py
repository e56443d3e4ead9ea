"""`GET /api/v1/orgs/{org}/usage/`: usage and spend, from the daily rollups."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.models import UsageDaily, VirtualKey
from gateway.services.keys import keys_visible_to
from portal.api.base import OrgScopedViewSet
from portal.models import OrgRole, Project, Team

GROUPS = {"day": "day", "route": "route", "key": "key_id", "project": "project_id", "team": "team_id",
          "user": "owner_email"}
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
        attrs.setdefault("from", attrs["to"] - dt.timedelta(days=29))
        if attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"from": "Must not be after 'to'."})
        if (attrs["to"] - attrs["from"]).days >= MAX_DAYS:
            raise serializers.ValidationError({"from": f"At most {MAX_DAYS} days at a time."})
        return attrs


class UsageRowSerializer(serializers.Serializer):
    group = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_null=True)
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.FloatField()
    avg_latency_ms = serializers.FloatField()


class UsageSerializer(serializers.Serializer):
    group_by = serializers.CharField()
    results = UsageRowSerializer(many=True)
    totals = UsageRowSerializer()


def summarize(rows: QuerySet[Any], group_field: str | None) -> list[dict[str, Any]]:
    values = rows.values(group_field) if group_field else rows
    agg = values.annotate(requests_sum=Sum("requests"), errors_sum=Sum("errors"), prompt=Sum("prompt_tokens"),
                          completion=Sum("completion_tokens"), cost_sum=Sum("cost"),
                          latency=Sum("latency_ms_sum")) if group_field else [rows.aggregate(
        requests_sum=Sum("requests"), errors_sum=Sum("errors"), prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"), cost_sum=Sum("cost"), latency=Sum("latency_ms_sum"))]
    out = []
    for row in agg:
        requests = row["requests_sum"] or 0
        out.append({
            "group": row.get(group_field) if group_field else None,
            "requests": requests, "errors": row["errors_sum"] or 0, "prompt_tokens": row["prompt"] or 0,
            "completion_tokens": row["completion"] or 0, "cost": float(row["cost_sum"] or 0),
            "avg_latency_ms": round((row["latency"] or 0) / requests, 1) if requests else 0.0,
        })
    return out


def labels(group_by: str, groups: list[Any], organization: Any) -> dict[Any, str]:
    model = {"key": VirtualKey, "project": Project, "team": Team}.get(group_by)
    if model is None:
        return {g: str(g) for g in groups}
    return {pk: name for pk, name in model.objects.filter(organization=organization, pk__in=groups)
            .values_list("pk", "name")}


def usage_report(actor: Any, params: dict[str, Any]) -> dict[str, Any]:
    rows = UsageDaily.objects.filter(organization=actor.organization, day__gte=params["from"], day__lte=params["to"])
    if actor.role == OrgRole.MEMBER:
        visible = keys_visible_to(actor, VirtualKey.objects.filter(organization=actor.organization))
        rows = rows.filter(key_id__in=visible.values("pk"))
    for name in ("team", "project", "key", "route"):
        if name in params:
            rows = rows.filter(**{GROUPS[name] if name != "route" else "route": params[name]})
    group_by = params["group_by"]
    field = GROUPS[group_by]
    results = sorted(summarize(rows, field), key=lambda r: (r["group"] is None, r["group"]))
    if group_by != "day":
        results.sort(key=lambda r: -r["cost"])
    names = labels(group_by, [r["group"] for r in results], actor.organization)
    for r in results:
        r["label"] = names.get(r["group"], str(r["group"]))
        r["group"] = r["group"].isoformat() if isinstance(r["group"], dt.date) else r["group"]
    totals = summarize(rows, None)[0] | {"label": "total"}
    return {"group_by": group_by, "from": params["from"], "to": params["to"], "results": results, "totals": totals}


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

