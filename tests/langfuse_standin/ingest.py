"""Writing traces, observations and scores into a project.

Both ingestion paths (OTLP and the legacy batch endpoint) and the seeding helper
end up here, so merge semantics are the same everywhere: later events fill in or
overwrite fields, metadata dicts are merged key by key and tags are unioned (as
Langfuse's ingestion service merges records with the same id).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .errors import ApiError
from .models import Observation, Project, Score, ScoreConfig, Trace, new_id, utcnow

OBSERVATION_TYPES = frozenset(
    {"SPAN", "GENERATION", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EVALUATOR", "EMBEDDING", "GUARDRAIL"}
)
ModelPrices = Mapping[str, Mapping[str, float]]


def merge_metadata(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **new}
    return new if new is not None else old


def upsert_trace(project: Project, trace_id: str, fields: dict[str, Any], *, timestamp: datetime | None,
                 earliest: bool = False) -> Trace:
    """Create or update a trace.

    ``fields`` uses record attribute names; None values are ignored (an event that
    does not mention a field leaves it alone). With ``earliest`` the trace keeps the
    earliest timestamp seen (OTel spans of one trace arrive in any order).
    """
    now = utcnow()
    trace = project.traces.get(trace_id)
    if trace is None:
        trace = Trace(id=trace_id, project_id=project.id, timestamp=timestamp or now, created_at=now, updated_at=now)
        project.put_trace(trace)
    elif timestamp is not None and (not earliest or timestamp < trace.timestamp):
        project.retime_trace(trace, timestamp)
    for name, value in fields.items():
        if value is None:
            continue
        if name == "tags":
            trace.tags = list(dict.fromkeys([*trace.tags, *value]))
        elif name == "metadata":
            trace.metadata = merge_metadata(trace.metadata, value)
        else:
            setattr(trace, name, value)
    trace.updated_at = now
    return trace


def upsert_observation(project: Project, obs_id: str, trace_id: str, fields: dict[str, Any], *,
                       prices: ModelPrices | None = None) -> Observation:
    """Create or update an observation (``fields`` as in `upsert_trace`)."""
    now = utcnow()
    existing = project.observations.get(obs_id)
    if existing is None:
        obs = Observation(
            id=obs_id, trace_id=trace_id, project_id=project.id, type=fields.get("type") or "SPAN",
            start_time=fields.get("start_time") or now, created_at=now, updated_at=now,
        )
    else:
        obs = existing
        obs.trace_id = trace_id or obs.trace_id
    for name, value in fields.items():
        if value is None:
            continue
        if name == "metadata":
            obs.metadata = merge_metadata(obs.metadata, value)
        elif name in ("usage_details", "cost_details"):
            setattr(obs, name, {**getattr(obs, name), **value})
        else:
            setattr(obs, name, value)
    if not obs.cost_details and obs.model and prices and obs.model in prices:
        obs.cost_details = finalize_costs(price_usage(obs.usage_details, prices[obs.model]))
    obs.updated_at = now
    project.put_observation(obs)
    return obs


def price_usage(usage: Mapping[str, int], price: Mapping[str, float]) -> dict[str, float]:
    """Cost per usage key from per-token prices (Langfuse infers costs from model prices)."""
    costs = {key: usage[key] * per_token for key, per_token in price.items() if key in usage and key != "total"}
    if costs:
        costs["total"] = sum(costs.values())
    return costs


# -------------------------------------------------------------------- usage

_USAGE_KEY_MAP = {
    "prompt_tokens": "input", "completion_tokens": "output", "total_tokens": "total",
    "input_tokens": "input", "output_tokens": "output", "promptTokens": "input",
    "completionTokens": "output", "totalTokens": "total", "input": "input", "output": "output", "total": "total",
    "prompt": "input", "completion": "output",
}


def normalize_usage(usage: Any) -> dict[str, int]:
    """Map the usage shapes the API accepts (Langfuse, OpenAI chat, OpenAI responses)
    to Langfuse's ``usageDetails`` keys (``input``, ``output``, ``total``, others kept)."""
    if not isinstance(usage, Mapping):
        return {}
    out: dict[str, int] = {}
    for key, value in usage.items():
        if isinstance(value, Mapping):  # *_tokens_details: {"cached_tokens": 3}
            prefix = "input" if key.startswith(("prompt", "input")) else "output"
            for sub_key, sub_value in value.items():
                if _is_number(sub_value):
                    out[f"{prefix}_{sub_key}"] = int(sub_value)
            continue
        if key in ("unit", "inputCost", "outputCost", "totalCost") or not _is_number(value):
            continue
        out[_USAGE_KEY_MAP.get(str(key), str(key))] = int(value)
    return out


def finalize_usage(usage: dict[str, int]) -> dict[str, int]:
    """Add ``total`` when it is missing, as Langfuse does for provided usage."""
    if usage and "total" not in usage:
        usage["total"] = sum(usage.values())
    return usage


def finalize_costs(costs: dict[str, float]) -> dict[str, float]:
    """Add the ``total`` cost when it is missing."""
    if costs and "total" not in costs:
        costs["total"] = sum(costs.values())
    return costs


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------- scores

SCORE_TEXT_MAX = 500


def create_score(project: Project, body: Mapping[str, Any], *, default_source: str = "API",
                 event_time: datetime | None = None) -> Score:
    """Validate a score creation like Langfuse and store it.

    The same ``id`` updates the existing score instead of adding a second one,
    which is what makes client retries idempotent.
    """
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "Score name is required", violation=True)
    trace_id, session_id = body.get("traceId"), body.get("sessionId")
    run_id, observation_id = body.get("datasetRunId"), body.get("observationId")
    if not (trace_id or session_id or run_id):
        raise ApiError(400, "A score needs a traceId, sessionId or datasetRunId", violation=True)
    if observation_id and not trace_id:
        raise ApiError(400, "observationId requires traceId", violation=True)
    source = body.get("source") or default_source
    config = _score_config(project, body.get("configId"))
    data_type = _score_data_type(body, config)
    if source == "ANNOTATION" and config is None and data_type != "CORRECTION":
        raise ApiError(400, "Scores with source ANNOTATION require a configId", violation=True)
    value, string_value = _score_value(data_type, body.get("value"), config)

    now = utcnow()
    score_id = body.get("id") or new_id()
    previous = project.scores.get(score_id)
    score = Score(
        id=score_id, project_id=project.id, name=name, data_type=data_type, source=source,
        timestamp=event_time or (previous.timestamp if previous else now),
        value=value, string_value=string_value, trace_id=trace_id, observation_id=observation_id,
        session_id=session_id, dataset_run_id=run_id, comment=body.get("comment"), metadata=body.get("metadata"),
        config_id=config.id if config else None, queue_id=body.get("queueId"),
        environment=body.get("environment") or "default",
        created_at=previous.created_at if previous else now, updated_at=now,
    )
    project.put_score(score)
    return score


def _score_config(project: Project, config_id: Any) -> ScoreConfig | None:
    if not config_id:
        return None
    config = project.score_configs.get(config_id)
    if config is None:
        raise ApiError(400, f"Score config {config_id} not found")
    if config.is_archived:
        raise ApiError(400, f"Score config {config_id} is archived")
    return config


def _score_data_type(body: Mapping[str, Any], config: ScoreConfig | None) -> str:
    declared = body.get("dataType")
    if config is not None:
        if declared and declared != config.data_type:
            raise ApiError(400, f"dataType {declared} does not match the score config ({config.data_type})")
        return config.data_type
    if declared:
        return declared
    return "CATEGORICAL" if isinstance(body.get("value"), str) else "NUMERIC"


def _score_value(data_type: str, value: Any, config: ScoreConfig | None) -> tuple[float | None, str | None]:
    """(numeric value, string value) per the rules in the spec's ``value`` description."""
    if data_type == "NUMERIC":
        if not _is_number(value):
            raise ApiError(400, "NUMERIC scores need a numeric value", violation=True)
        if config is not None:
            if config.min_value is not None and value < config.min_value:
                raise ApiError(400, f"Value {value} is below the config minimum {config.min_value}")
            if config.max_value is not None and value > config.max_value:
                raise ApiError(400, f"Value {value} is above the config maximum {config.max_value}")
        return float(value), None
    if data_type == "BOOLEAN":
        if not _is_number(value) or value not in (0, 1):
            raise ApiError(400, "Boolean score values must equal either 1 or 0", violation=True)
        return float(value), "True" if value == 1 else "False"
    if data_type == "CATEGORICAL":
        if config is not None and config.categories:
            for category in config.categories:
                if value in (category["label"], category["value"]):
                    return float(category["value"]), str(category["label"])
            raise ApiError(400, f"Value {value!r} is not a category of the score config")
        if not isinstance(value, str):
            raise ApiError(400, "CATEGORICAL scores need a string value", violation=True)
        return None, value
    if data_type == "TEXT":
        if not isinstance(value, str) or not 1 <= len(value) <= SCORE_TEXT_MAX:
            raise ApiError(400, "Text score values must be between 1 and 500 characters", violation=True)
        return None, value
    if data_type == "CORRECTION":
        if not isinstance(value, str):
            raise ApiError(400, "CORRECTION scores need a string value", violation=True)
        return 0.0, value
    raise ApiError(400, f"Unknown dataType {data_type}", violation=True)
