"""Bodies of the evaluation agent's endpoints: reports (a summary, findings with
their evidence linked to Langfuse, the steps, the conversation), a report's
steps with their results, follow-up questions and answers, schedules."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from evals.agent.models import (
    MAX_SECONDS,
    MAX_STEPS,
    MAX_TOKENS,
    AgentFinding,
    AgentMessage,
    AgentReport,
    AgentSchedule,
    AgentStep,
)
from evals.api.serializers import RouteName
from evals.models import LangfuseConnection

#: the most a report or a schedule may be allowed to spend (USD)
MAX_SPEND = Decimal("100")
REPORT_FIELDS = ["id", "status", "route", "schedule", "focus", "window_start", "window_end", "max_steps",
                 "max_tokens", "max_seconds", "max_spend", "steps_taken", "tokens_used", "cost", "summary",
                 "findings_dropped", "stop_reason", "error", "created_at", "started_at", "finished_at"]
STEP_FIELDS = ["id", "index", "kind", "message", "content", "tool_call_id", "tool_name", "arguments", "result_digest",
               "trace_ids", "truncated", "error", "prompt_tokens", "completion_tokens", "cost", "latency_ms",
               "llm_trace_id", "created_at"]
TRACE_LINK = {"type": "object", "properties": {"id": {"type": "string"},
                                               "url": {"type": "string", "nullable": True}}}


def trace_url(conn: LangfuseConnection | None, trace_id: Any) -> str | None:
    """A trace's page in the project's Langfuse (the id quoted: it came from trace data); None without a
    connection. The API's links and the pages' (portal/web/evaluations/agent.py) are made here."""
    return conn.trace_url(quote(str(trace_id), safe="")) if conn and conn.langfuse_project_id else None


def trace_link(context: Mapping[str, Any], trace_id: str) -> dict[str, Any]:
    """A trace id and its page in the project's Langfuse (null without a connection)."""
    return {"id": trace_id, "url": trace_url(context.get("langfuse"), trace_id)}


def bound(low: int, high: int) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=low, max_value=high, required=False, help_text=f"{low}-{high}.")


@extend_schema_serializer(examples=[OpenApiExample("Through the route chat", request_only=True, value={
    "route": "chat", "focus": "answers in the wrong language", "max_steps": 20})])
class AgentReportRequestSerializer(serializers.Serializer):
    route = RouteName(help_text="The route the agent's model calls go through, by name: one the project's team "
                                "may use.")
    focus = serializers.CharField(max_length=2000, required=False, allow_blank=True,
                                  help_text="What to look at, in your words.")
    window_start = serializers.DateTimeField(required=False, help_text="Default: 7 days before window_end.")
    window_end = serializers.DateTimeField(required=False, help_text="Default: now.")
    max_steps = bound(1, MAX_STEPS)
    max_tokens = bound(1000, MAX_TOKENS)
    max_seconds = bound(10, MAX_SECONDS)
    max_spend = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=Decimal("0.0001"),
                                         max_value=MAX_SPEND, required=False, help_text="USD.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("window_start"), attrs.get("window_end")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"window_end": "Must be after window_start."})
        return attrs


class AgentReportSerializer(serializers.ModelSerializer):
    route = serializers.CharField(source="route.name", read_only=True)
    findings = serializers.SerializerMethodField(help_text="How many findings were kept.")

    class Meta:
        model = AgentReport
        fields = [*REPORT_FIELDS[:15], "findings", *REPORT_FIELDS[15:]]
        read_only_fields = fields

    def get_findings(self, obj: AgentReport) -> int:
        counted = getattr(obj, "finding_count", None)  # the list annotates it; a new report has none yet
        return int(counted) if counted is not None else obj.findings.count()


class AgentFindingSerializer(serializers.ModelSerializer):
    traces = serializers.SerializerMethodField(help_text="The evidence: the traces that show it, with their "
                                                         "Langfuse pages.")

    class Meta:
        model = AgentFinding
        fields = ["index", "key", "title", "problem", "count", "share", "cost", "change_kind", "change", "status",
                  "trace_ids", "traces", "steps", "dataset"]
        read_only_fields = fields

    @extend_schema_field({"type": "array", "items": TRACE_LINK})
    def get_traces(self, obj: AgentFinding) -> list[dict[str, Any]]:
        return [trace_link(self.context, t) for t in obj.trace_ids or []]


class AgentStepDigestSerializer(serializers.ModelSerializer):
    """A step as the report shows it: what the model said or called, and a digest of what the tool returned;
    its traces and the model call's own trace linked to Langfuse."""

    traces = serializers.SerializerMethodField(help_text="The traces the result holds, with their Langfuse pages.")
    llm_trace_url = serializers.SerializerMethodField(help_text="The model call's trace in Langfuse (null without "
                                                                "one or without a connection).")

    class Meta:
        model = AgentStep
        fields = [*STEP_FIELDS[:10], "traces", *STEP_FIELDS[10:-1], "llm_trace_url", STEP_FIELDS[-1]]
        read_only_fields = fields

    @extend_schema_field({"type": "array", "items": TRACE_LINK})
    def get_traces(self, obj: AgentStep) -> list[dict[str, Any]]:
        ids = obj.trace_ids if isinstance(obj.trace_ids, list) else []
        return [trace_link(self.context, t) for t in ids]

    @extend_schema_field({"type": "string", "nullable": True})
    def get_llm_trace_url(self, obj: AgentStep) -> str | None:
        return trace_url(self.context.get("langfuse"), obj.llm_trace_id) if obj.llm_trace_id else None


class AgentStepSerializer(AgentStepDigestSerializer):
    """A step with the tool's structured result (what evidence is checked against)."""

    class Meta(AgentStepDigestSerializer.Meta):
        fields = [*AgentStepDigestSerializer.Meta.fields[:9], "result", *AgentStepDigestSerializer.Meta.fields[9:]]
        read_only_fields = fields


class AgentMessageSerializer(serializers.ModelSerializer):
    evidence = serializers.SerializerMethodField(help_text="[{trace_id, url, steps}]: the traces the answer cites "
                                                           "and the tool steps that show them.")
    steps = serializers.SerializerMethodField(help_text="The indexes of the answer's steps (its model messages and "
                                                        "tool calls): `steps/?message={id}` lists them.")

    class Meta:
        model = AgentMessage
        fields = ["id", "role", "content", "status", "evidence", "evidence_dropped", "steps", "stop_reason", "error",
                  "cost", "created_at", "finished_at"]
        read_only_fields = fields

    def get_steps(self, obj: AgentMessage) -> list[int]:
        return sorted(step.index for step in obj.steps.all())  # prefetched by the lists (index only)

    @extend_schema_field({"type": "array", "items": {"type": "object", "properties": {
        "trace_id": {"type": "string"}, "url": {"type": "string", "nullable": True},
        "steps": {"type": "array", "items": {"type": "integer"}}}}})
    def get_evidence(self, obj: AgentMessage) -> list[dict[str, Any]]:
        cited = [e for e in obj.evidence or [] if isinstance(e, dict) and e.get("trace_id")]
        return [{"trace_id": e["trace_id"], "url": trace_link(self.context, e["trace_id"])["url"],
                 "steps": e.get("steps") or []} for e in cited]


class AgentReportDetailSerializer(AgentReportSerializer):
    """A report with its findings, its steps (digests; `steps/` has the results), the findings dropped for
    evidence that did not hold, and the conversation."""

    findings = AgentFindingSerializer(many=True, read_only=True)  # type: ignore[assignment]
    steps = AgentStepDigestSerializer(many=True, read_only=True)
    messages = AgentMessageSerializer(many=True, read_only=True)
    dropped = serializers.JSONField(read_only=True, help_text="[{title, reason}] of the findings dropped.")

    class Meta(AgentReportSerializer.Meta):
        fields = [*AgentReportSerializer.Meta.fields, "dropped", "steps", "messages"]
        read_only_fields = fields


@extend_schema_serializer(examples=[OpenApiExample("A question", request_only=True,
                                                    value={"content": "Which routes does the first finding hit?"})])
class AgentMessageRequestSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=4000, help_text="A follow-up question about the report.")


class AgentFindingDatasetRequestSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False,
                                 help_text="The dataset to write to (created if the project has none of this name). "
                                           "Default: the finding's dataset, or a new one named after it.")
    output_as = serializers.ChoiceField(
        choices=[("metadata", "The trace's output goes to metadata.output; the expected output is yours to write "
                              "(a finding's traces are the ones that went wrong)"),
                 ("expected_output", "The trace's output becomes the expected output")],
        default="metadata")


@extend_schema_serializer(examples=[OpenApiExample("Weekly through the route chat", request_only=True,
                                                    value={"name": "weekly", "route": "chat"})])
class AgentScheduleSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    route = RouteName(help_text="The route the agent's model calls go through, by name.")
    max_spend = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=Decimal("0.0001"),
                                         max_value=MAX_SPEND, required=False, help_text="USD, per report.")
    last_report = serializers.SerializerMethodField()

    class Meta:
        model = AgentSchedule
        fields = ["id", "name", "enabled", "cron", "route", "focus", "lookback_hours", "alert_on_new",
                  "alert_growth", "max_steps", "max_tokens", "max_seconds", "max_spend", "last_report", "created_at"]
        read_only_fields = ["id", "last_report", "created_at"]
        validators: list[Any] = []

    @extend_schema_field({"type": "object", "nullable": True, "properties": {
        "id": {"type": "integer"}, "status": {"type": "string"}, "created_at": {"type": "string",
                                                                                "format": "date-time"}}})
    def get_last_report(self, obj: AgentSchedule) -> dict[str, Any] | None:
        row: Any = obj
        if hasattr(row, "last_report_id"):  # the lists annotate it (AgentScheduleViewSet.narrow_queryset)
            return None if row.last_report_id is None else {"id": row.last_report_id, "status": row.last_report_status,
                                                            "created_at": row.last_report_created_at}
        last = obj.reports.order_by("-created_at", "-id").first()
        return {"id": last.pk, "status": last.status, "created_at": last.created_at} if last else None
