"""Turn stored records into the JSON shapes the spec defines.

One function per schema (``Trace``, ``TraceWithDetails``, ``ObservationsView``,
``ObservationV2``, ``ScoreV1``/``Score``/``ScoreV3``, datasets, ...). Keeping the
mapping here, away from the handlers, makes it easy to compare against the YAML.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .models import (
    ApiKey,
    Dataset,
    DatasetItem,
    DatasetRun,
    DatasetRunItem,
    Observation,
    Project,
    Score,
    ScoreConfig,
    Trace,
    iso,
)

TRACE_FIELD_GROUPS = frozenset({"core", "io", "scores", "observations", "metrics"})
OBSERVATION_V2_FIELD_GROUPS = frozenset(
    {"core", "basic", "time", "io", "metadata", "model", "usage", "prompt", "metrics", "trace_context"}
)
SCORE_V3_FIELD_GROUPS = frozenset({"details", "subject", "annotation"})
METADATA_TRUNCATE = 200


def page_meta(page: int, limit: int, total: int) -> dict[str, int]:
    """``utilsMetaResponse``."""
    return {"page": page, "limit": limit, "totalItems": total, "totalPages": math.ceil(total / limit) if limit else 0}


# ------------------------------------------------------------------- traces


def trace(t: Trace, *, io: bool = True) -> dict[str, Any]:
    """``Trace``."""
    out: dict[str, Any] = {
        "id": t.id,
        "timestamp": iso(t.timestamp),
        "name": t.name,
        "sessionId": t.session_id,
        "release": t.release,
        "version": t.version,
        "userId": t.user_id,
        "tags": list(t.tags),
        "public": t.public,
        "environment": t.environment,
    }
    if io:
        out["input"] = t.input
        out["output"] = t.output
        out["metadata"] = t.metadata
    return out


def trace_with_details(project: Project, t: Trace, groups: frozenset[str]) -> dict[str, Any]:
    """``TraceWithDetails`` (list endpoint): ids of observations and scores, latency, cost."""
    out = trace(t, io="io" in groups)
    out["htmlPath"] = html_path(project, t.id)
    out["observations"] = list(project.observations_by_trace.get(t.id, ())) if "observations" in groups else []
    out["scores"] = list(project.scores_by_trace.get(t.id, ())) if "scores" in groups else []
    if "metrics" in groups:
        out["latency"] = project.trace_latency(t.id)
        out["totalCost"] = project.trace_cost(t.id)
    else:
        out["latency"] = -1
        out["totalCost"] = -1
    return out


def trace_with_full_details(project: Project, t: Trace, groups: frozenset[str]) -> dict[str, Any]:
    """``TraceWithFullDetails`` (single trace): nested observations and scores."""
    out = trace_with_details(project, t, groups)
    out["observations"] = (
        [observation_view(o) for o in project.trace_observations(t.id)] if "observations" in groups else []
    )
    # ScoreV1 has no CORRECTION variant, so corrections are not listed here (they are in the v2/v3 APIs).
    out["scores"] = (
        [score_v1(s) for s in project.trace_scores(t.id) if s.trace_id and s.data_type != "CORRECTION"]
        if "scores" in groups else []
    )
    return out


def html_path(project: Project, trace_id: str) -> str:
    return f"/project/{project.id}/traces/{trace_id}"


# ------------------------------------------------------------- observations


def usage(o: Observation) -> dict[str, Any]:
    """``Usage`` (legacy aggregate usage object of v1 observations)."""
    return {
        "input": o.input_tokens,
        "output": o.output_tokens,
        "total": o.total_tokens,
        "unit": "TOKENS",
        "inputCost": o.cost("input"),
        "outputCost": o.cost("output"),
        "totalCost": o.cost("total"),
    }


def observation(o: Observation) -> dict[str, Any]:
    """``Observation``."""
    return {
        "id": o.id,
        "traceId": o.trace_id,
        "type": o.type,
        "name": o.name,
        "startTime": iso(o.start_time),
        "endTime": iso(o.end_time),
        "completionStartTime": iso(o.completion_start_time),
        "model": o.model,
        "modelParameters": o.model_parameters,
        "input": o.input,
        "version": o.version,
        "metadata": o.metadata,
        "output": o.output,
        "usage": usage(o),
        "level": o.level,
        "statusMessage": o.status_message,
        "parentObservationId": o.parent_observation_id,
        "promptId": None,
        "usageDetails": dict(o.usage_details),
        "costDetails": dict(o.cost_details),
        "environment": o.environment,
    }


def observation_view(o: Observation) -> dict[str, Any]:
    """``ObservationsView``: an observation plus prompt, price and latency fields (seconds)."""
    out = observation(o)
    out.update({
        "promptName": o.prompt_name,
        "promptVersion": o.prompt_version,
        "modelId": None,
        "inputPrice": None,
        "outputPrice": None,
        "totalPrice": None,
        "calculatedInputCost": o.cost("input"),
        "calculatedOutputCost": o.cost("output"),
        "calculatedTotalCost": o.cost("total"),
        "latency": o.latency_seconds,
        "timeToFirstToken": o.time_to_first_token_seconds,
    })
    return out


def is_root(o: Observation) -> bool:
    return o.parent_observation_id is None or o.is_app_root


def observation_v2(
    project: Project, o: Observation, groups: frozenset[str], expand_metadata: frozenset[str]
) -> dict[str, Any]:
    """``ObservationV2`` with the requested field groups (v2 observations API).

    ``modelId``/``inputPrice``/``outputPrice``/``totalPrice`` are required by the
    schema although no field group lists them, so they are always present.
    Input and output are returned as raw strings, as the endpoint documents.
    """
    out: dict[str, Any] = {
        "id": o.id,
        "traceId": o.trace_id,
        "startTime": iso(o.start_time),
        "endTime": iso(o.end_time),
        "projectId": o.project_id,
        "parentObservationId": o.parent_observation_id,
        "type": o.type,
        "modelId": None,
        "inputPrice": None,
        "outputPrice": None,
        "totalPrice": None,
    }
    t = project.traces.get(o.trace_id)
    if "basic" in groups:
        out.update({
            "name": o.name,
            "level": o.level,
            "statusMessage": o.status_message,
            "version": o.version,
            "environment": o.environment,
            "bookmarked": False,
            "public": t.public if t else False,
            "userId": t.user_id if t else None,
            "sessionId": t.session_id if t else None,
            "isRootObservation": is_root(o),
        })
    if "time" in groups:
        out.update({
            "completionStartTime": iso(o.completion_start_time),
            "createdAt": iso(o.created_at),
            "updatedAt": iso(o.updated_at),
        })
    if "io" in groups:
        out["input"] = raw_string(o.input)
        out["output"] = raw_string(o.output)
    if "metadata" in groups:
        out["metadata"] = truncated_metadata(o.metadata, expand_metadata)
    if "model" in groups:
        out.update({"providedModelName": o.model, "internalModelId": None, "modelParameters": o.model_parameters})
    if "usage" in groups:
        out.update({
            "usageDetails": dict(o.usage_details),
            "costDetails": dict(o.cost_details),
            "totalCost": o.cost("total"),
            "usagePricingTierName": None,
        })
    if "prompt" in groups:
        out.update({"promptId": None, "promptName": o.prompt_name, "promptVersion": o.prompt_version})
    if "metrics" in groups:
        out.update({"latency": o.latency_seconds, "timeToFirstToken": o.time_to_first_token_seconds})
    if "trace_context" in groups:
        out.update({
            "tags": list(t.tags) if t else [],
            "release": t.release if t else None,
            "traceName": t.name if t else None,
        })
    return out


def raw_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def truncated_metadata(metadata: Any, expand: frozenset[str]) -> Any:
    """v2 metadata: a string map, values cut to 200 characters unless expanded."""
    if not isinstance(metadata, dict):
        return metadata
    out = {}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out[key] = text if key in expand or len(text) <= METADATA_TRUNCATE else text[:METADATA_TRUNCATE]
    return out


# ------------------------------------------------------------------- scores


def _score_value_fields(s: Score) -> dict[str, Any]:
    """``value``/``stringValue`` of the v1/v2 score shapes per data type."""
    if s.data_type == "NUMERIC":
        return {"value": s.value if s.value is not None else 0.0}
    if s.data_type == "TEXT":
        return {"stringValue": s.string_value or ""}
    return {"value": s.value if s.value is not None else 0.0, "stringValue": s.string_value or ""}


def score_v1(s: Score) -> dict[str, Any]:
    """``ScoreV1`` (scores nested in a trace: traceId is required)."""
    return {
        "id": s.id,
        "traceId": s.trace_id,
        "name": s.name,
        "source": s.source,
        "observationId": s.observation_id,
        "timestamp": iso(s.timestamp),
        "createdAt": iso(s.created_at),
        "updatedAt": iso(s.updated_at),
        "authorUserId": s.author_user_id,
        "comment": s.comment,
        "metadata": s.metadata,
        "configId": s.config_id,
        "queueId": s.queue_id,
        "environment": s.environment,
        "dataType": s.data_type,
        **_score_value_fields(s),
    }


def score_v2(project: Project, s: Score, *, with_trace: bool) -> dict[str, Any]:
    """``Score`` / ``GetScoresResponseData`` (v2 scores API)."""
    out = {
        "id": s.id,
        "traceId": s.trace_id,
        "sessionId": s.session_id,
        "observationId": s.observation_id,
        "datasetRunId": s.dataset_run_id,
        "name": s.name,
        "source": s.source,
        "timestamp": iso(s.timestamp),
        "createdAt": iso(s.created_at),
        "updatedAt": iso(s.updated_at),
        "authorUserId": s.author_user_id,
        "comment": s.comment,
        "metadata": s.metadata,
        "configId": s.config_id,
        "queueId": s.queue_id,
        "environment": s.environment,
        "dataType": s.data_type,
        **_score_value_fields(s),
    }
    if with_trace:
        t = project.traces.get(s.trace_id) if s.trace_id else None
        out["trace"] = (
            {"userId": t.user_id, "tags": list(t.tags), "environment": t.environment, "sessionId": t.session_id}
            if t else None
        )
    return out


def score_v3_value(s: Score) -> Any:
    """The polymorphic v3 ``value``: number, boolean or string depending on the data type."""
    if s.data_type == "NUMERIC":
        return s.value if s.value is not None else 0.0
    if s.data_type == "BOOLEAN":
        return bool(s.value)
    return s.string_value or ""


def score_subject(s: Score) -> dict[str, Any] | None:
    if s.observation_id:
        return {"kind": "observation", "id": s.observation_id, "traceId": s.trace_id}
    if s.trace_id:
        return {"kind": "trace", "id": s.trace_id}
    if s.session_id:
        return {"kind": "session", "id": s.session_id}
    if s.dataset_run_id:
        return {"kind": "experiment", "id": s.dataset_run_id}
    return None


def score_v3(s: Score, groups: frozenset[str]) -> dict[str, Any]:
    """``ScoreV3``: core fields plus the requested groups."""
    out: dict[str, Any] = {
        "id": s.id,
        "projectId": s.project_id,
        "name": s.name,
        "value": score_v3_value(s),
        "dataType": s.data_type,
        "source": s.source,
        "timestamp": iso(s.timestamp),
        "environment": s.environment,
        "createdAt": iso(s.created_at),
        "updatedAt": iso(s.updated_at),
    }
    if "details" in groups:
        out.update({
            "comment": s.comment,
            "configId": s.config_id,
            "metadata": s.metadata if isinstance(s.metadata, dict) else None,
        })
    if "subject" in groups:
        out["subject"] = score_subject(s)
    if "annotation" in groups:
        out.update({"authorUserId": s.author_user_id, "queueId": s.queue_id})
    return out


def score_config(c: ScoreConfig) -> dict[str, Any]:
    """``ScoreConfig``."""
    return {
        "id": c.id,
        "name": c.name,
        "createdAt": iso(c.created_at),
        "updatedAt": iso(c.updated_at),
        "projectId": c.project_id,
        "dataType": c.data_type,
        "isArchived": c.is_archived,
        "minValue": c.min_value,
        "maxValue": c.max_value,
        "categories": c.categories,
        "description": c.description,
    }


# ----------------------------------------------------------------- datasets


def dataset(d: Dataset) -> dict[str, Any]:
    """``Dataset``."""
    return {
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "metadata": d.metadata,
        "inputSchema": d.input_schema,
        "expectedOutputSchema": d.expected_output_schema,
        "projectId": d.project_id,
        "createdAt": iso(d.created_at),
        "updatedAt": iso(d.updated_at),
    }


def dataset_item_snapshot(item: DatasetItem) -> dict[str, Any]:
    """``DatasetItem`` (also what the version history stores)."""
    return {
        "id": item.id,
        "status": item.status,
        "input": item.input,
        "expectedOutput": item.expected_output,
        "metadata": item.metadata,
        "sourceTraceId": item.source_trace_id,
        "sourceObservationId": item.source_observation_id,
        "datasetId": item.dataset_id,
        "datasetName": item.dataset_name,
        "createdAt": iso(item.created_at),
        "updatedAt": iso(item.updated_at),
        "mediaReferences": [],
    }


def dataset_run(run: DatasetRun, dataset_name: str) -> dict[str, Any]:
    """``DatasetRun``."""
    return {
        "id": run.id,
        "name": run.name,
        "description": run.description,
        "metadata": run.metadata,
        "datasetId": run.dataset_id,
        "datasetName": dataset_name,
        "createdAt": iso(run.created_at),
        "updatedAt": iso(run.updated_at),
    }


def dataset_run_item(item: DatasetRunItem, run_name: str) -> dict[str, Any]:
    """``DatasetRunItem``."""
    return {
        "id": item.id,
        "datasetRunId": item.dataset_run_id,
        "datasetRunName": run_name,
        "datasetItemId": item.dataset_item_id,
        "traceId": item.trace_id,
        "observationId": item.observation_id,
        "createdAt": iso(item.created_at),
        "updatedAt": iso(item.updated_at),
    }


# ----------------------------------------------------------------- projects


def project(p: Project) -> dict[str, Any]:
    """``Project`` (``retentionDays`` only when set, like the server)."""
    out: dict[str, Any] = {
        "id": p.id,
        "name": p.name,
        "organization": {"id": p.org.id, "name": p.org.name},
        "metadata": dict(p.metadata),
    }
    if p.retention_days:
        out["retentionDays"] = p.retention_days
    return out


def organization_project(p: Project) -> dict[str, Any]:
    """``OrganizationProject``."""
    return {
        "id": p.id,
        "name": p.name,
        "metadata": dict(p.metadata),
        "createdAt": iso(p.created_at),
        "updatedAt": iso(p.updated_at),
    }


def api_key_summary(key: ApiKey) -> dict[str, Any]:
    """``ApiKeySummary`` / ``OrganizationApiKey``."""
    return {
        "id": key.id,
        "createdAt": iso(key.created_at),
        "expiresAt": None,
        "lastUsedAt": iso(key.last_used_at),
        "note": key.note,
        "publicKey": key.public_key,
        "displaySecretKey": key.display_secret_key,
    }


def api_key_response(key: ApiKey) -> dict[str, Any]:
    """``ApiKeyResponse`` (the only time the secret is shown)."""
    return {
        "id": key.id,
        "createdAt": iso(key.created_at),
        "publicKey": key.public_key,
        "secretKey": key.secret_key,
        "displaySecretKey": key.display_secret_key,
        "note": key.note,
    }
