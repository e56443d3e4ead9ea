"""OTLP/HTTP trace ingestion: decode spans and map them like Langfuse does.

The attribute mapping follows Langfuse's ``OtelIngestionProcessor`` (trace name,
user/session ids, tags, metadata prefixes, ``gen_ai.*`` model/usage/cost, the
input/output conventions of common instrumentations, observation type inference),
simplified to what a stand-in needs. Every span becomes an observation; every
trace id gets a trace record, full for root spans and spans carrying
``langfuse.trace.*`` attributes, shallow otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .errors import ApiError
from .ingest import ModelPrices, finalize_costs, finalize_usage, upsert_observation, upsert_trace
from .models import Project, from_unix_nanos, parse_time_or_none, utcnow

LANGFUSE_SDK_SCOPE = "langfuse-sdk"
STATUS_CODE_ERROR = 2


@dataclass
class SpanData:
    """A span in a neutral form, whether it arrived as protobuf or JSON."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int | None
    end_ns: int | None
    attributes: dict[str, Any]
    status_code: int = 0
    status_message: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------- decoding


def decode_protobuf(body: bytes) -> list[SpanData]:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except Exception as exc:  # protobuf raises DecodeError, but be lenient about the type
        raise ApiError(400, f"Invalid OTLP protobuf payload: {exc}", violation=True) from None
    spans: list[SpanData] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = {
                "name": scope_spans.scope.name,
                "version": scope_spans.scope.version,
                "attributes": _pb_attributes(scope_spans.scope.attributes),
            }
            for span in scope_spans.spans:
                spans.append(SpanData(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    start_ns=span.start_time_unix_nano or None,
                    end_ns=span.end_time_unix_nano or None,
                    attributes=_pb_attributes(span.attributes),
                    status_code=span.status.code,
                    status_message=span.status.message or None,
                    events=[{"name": e.name, "attributes": _pb_attributes(e.attributes)} for e in span.events],
                    resource_attributes=resource,
                    scope=scope,
                ))
    return spans


def _pb_attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in key_values}


def _pb_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def decode_json(body: dict[str, Any]) -> list[SpanData]:
    """OTLP/JSON: ids are hex strings (base64 tolerated), int64 values may be strings."""
    spans: list[SpanData] = []
    for resource_spans in body.get("resourceSpans") or []:
        resource = _json_attributes(((resource_spans or {}).get("resource") or {}).get("attributes"))
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            raw_scope = (scope_spans or {}).get("scope") or {}
            scope = {"name": raw_scope.get("name") or "", "version": raw_scope.get("version") or "",
                     "attributes": _json_attributes(raw_scope.get("attributes"))}
            for span in (scope_spans or {}).get("spans") or []:
                status = span.get("status") or {}
                spans.append(SpanData(
                    trace_id=_json_id(span.get("traceId")),
                    span_id=_json_id(span.get("spanId")),
                    parent_span_id=_json_id(span.get("parentSpanId")) or None,
                    name=span.get("name") or "",
                    start_ns=_json_int(span.get("startTimeUnixNano")),
                    end_ns=_json_int(span.get("endTimeUnixNano")),
                    attributes=_json_attributes(span.get("attributes")),
                    status_code=_json_int(status.get("code")) or 0,
                    status_message=status.get("message") or None,
                    events=[{"name": e.get("name"), "attributes": _json_attributes(e.get("attributes"))}
                            for e in span.get("events") or []],
                    resource_attributes=resource,
                    scope=scope,
                ))
    return spans


def _json_id(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        text = value.strip()
        if len(text) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in text):
            return text.lower()
        try:
            return base64.b64decode(text, validate=True).hex()
        except (binascii.Error, ValueError):
            return text
    if isinstance(value, list):  # Buffer serialised as an int array
        return bytes(value).hex()
    return str(value)


def _json_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _json_attributes(items: Any) -> dict[str, Any]:
    return {str(kv.get("key")): _json_value(kv.get("value") or {}) for kv in items or [] if isinstance(kv, dict)}


def _json_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return _json_int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_json_value(v or {}) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return _json_attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


# ------------------------------------------------------------------ mapping


def ingest_spans(project: Project, spans: list[SpanData], prices: ModelPrices | None = None) -> None:
    """Store every span as an observation and create/merge its trace."""
    for span in spans:
        _ingest_span(project, span, prices)


def _ingest_span(project: Project, span: SpanData, prices: ModelPrices | None) -> None:
    attrs, resource = span.attributes, span.resource_attributes
    start, end = _span_times(span)
    is_sdk = span.scope.get("name", "").startswith(LANGFUSE_SDK_SCOPE)
    is_root = not span.parent_span_id or str(attrs.get("langfuse.internal.as_root")).lower() == "true"
    environment = _environment(attrs, resource)
    observation_io = _input_output(attrs, span.events, domain="observation")
    resource_trace_metadata = _metadata(resource, "trace")
    scope_info = {"name": span.scope.get("name"), "version": span.scope.get("version"),
                  "attributes": span.scope.get("attributes", {})}

    trace_fields: dict[str, Any] = {"environment": environment}
    if is_root or _has_trace_updates(attrs):
        trace_io = _input_output(attrs, span.events, domain="trace") if is_root else (
            _json_or_text(attrs.get("langfuse.trace.input")), _json_or_text(attrs.get("langfuse.trace.output")))
        trace_metadata = {**resource_trace_metadata, **_metadata(attrs, "trace")}
        if is_root:
            trace_metadata.update(_metadata(attrs, "observation"))
            if not is_sdk:
                trace_metadata["attributes"] = _filtered_attributes(attrs)
        trace_metadata.update({"resourceAttributes": resource, "scope": scope_info})
        trace_fields.update({
            "name": attrs.get("langfuse.trace.name") or (_name(span.name, attrs) if is_root else None),
            "metadata": trace_metadata,
            "version": attrs.get("langfuse.version") or resource.get("service.version"),
            "release": attrs.get("langfuse.release") or resource.get("langfuse.release"),
            "user_id": _first_text(attrs, ("langfuse.user.id", "user.id",
                                            "langfuse.observation.metadata.langfuse_user_id",
                                            "langfuse.trace.metadata.langfuse_user_id")),
            "session_id": _first_text(attrs, ("langfuse.session.id", "session.id", "gen_ai.conversation.id",
                                               "langfuse.observation.metadata.langfuse_session_id",
                                               "langfuse.trace.metadata.langfuse_session_id")),
            "public": _public(attrs),
            "tags": _tags(attrs),
            "input": trace_io[0],
            "output": trace_io[1],
        })
    upsert_trace(project, span.trace_id, trace_fields, timestamp=start, earliest=True)

    observation_metadata = {
        **resource_trace_metadata,
        **_metadata(attrs, "observation"),
        **({} if is_sdk else {"attributes": _filtered_attributes(attrs)}),
        "resourceAttributes": resource,
        "scope": scope_info,
    }
    upsert_observation(project, span.span_id, span.trace_id, {
        "type": _observation_type(attrs, resource, span.scope),
        "name": _name(span.name, attrs),
        "parent_observation_id": span.parent_span_id,
        "start_time": start,
        "end_time": end,
        "environment": environment,
        "version": attrs.get("langfuse.version") or resource.get("service.version"),
        "level": _level(attrs.get("langfuse.observation.level"), span.status_code),
        "status_message": attrs.get("langfuse.observation.status_message") or span.status_message,
        "model": _first_text(attrs, ("langfuse.observation.model.name", "gen_ai.response.model", "ai.model.id",
                                     "gen_ai.request.model", "llm.response.model", "llm.model_name", "model")),
        "model_parameters": _model_parameters(attrs),
        "input": observation_io[0],
        "output": observation_io[1],
        "metadata": observation_metadata,
        "usage_details": finalize_usage(_usage_details(attrs)),
        "cost_details": finalize_costs(_cost_details(attrs)),
        "completion_start_time": parse_time_or_none(
            _json_or_text(attrs.get("langfuse.observation.completion_start_time"))),
        "prompt_name": attrs.get("langfuse.observation.prompt.name") or attrs.get("langfuse.prompt.name"),
        "prompt_version": _int_or_none(attrs.get("langfuse.observation.prompt.version")
                                       or attrs.get("langfuse.prompt.version")),
        "is_app_root": str(attrs.get("langfuse.internal.is_app_root")).lower() == "true",
        "attributes": dict(attrs),
        "resource_attributes": dict(resource),
        "scope": scope_info,
        "experiment": _experiment(attrs),
    }, prices=prices)


_LEVELS = frozenset({"DEBUG", "DEFAULT", "WARNING", "ERROR"})


def _level(value: Any, status_code: int) -> str:
    """``langfuse.observation.level`` if valid, else ERROR for an error status, else DEFAULT."""
    if isinstance(value, str) and value.upper() in _LEVELS:
        return value.upper()
    return "ERROR" if status_code == STATUS_CODE_ERROR else "DEFAULT"


def _span_times(span: SpanData) -> tuple[datetime, datetime]:
    start = from_unix_nanos(span.start_ns) if span.start_ns else None
    end = from_unix_nanos(span.end_ns) if span.end_ns else None
    fallback = utcnow()
    return start or end or fallback, end or start or fallback


def _environment(attrs: dict[str, Any], resource: dict[str, Any]) -> str:
    for key in ("langfuse.environment", "deployment.environment.name", "deployment.environment"):
        if attrs.get(key):
            return str(attrs[key])
        if resource.get(key):
            return str(resource[key])
    return "default"


def _name(span_name: str, attrs: dict[str, Any]) -> str:
    for key in ("gen_ai.tool.name", "logfire.msg", "ai.toolCall.name"):
        if attrs.get(key):
            return attrs[key] if isinstance(attrs[key], str) else json.dumps(attrs[key])
    return span_name


def _first_text(attrs: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if value:
            return value if isinstance(value, str) else json.dumps(value)
    return None


def _public(attrs: dict[str, Any]) -> bool | None:
    value = attrs.get("langfuse.trace.public", attrs.get("langfuse.public"))
    if value is None:
        return None
    return value is True or value == "true"


def _tags(attrs: dict[str, Any]) -> list[str]:
    value = (attrs.get("langfuse.trace.tags") or attrs.get("langfuse.tags")
             or attrs.get("langfuse.observation.metadata.langfuse_tags")
             or attrs.get("langfuse.trace.metadata.langfuse_tags"))
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        except ValueError:
            pass
    if "," in text:
        return [part.strip() for part in text.split(",")]
    return [text]


_TRACE_UPDATE_KEYS = (
    "langfuse.trace.name", "langfuse.trace.input", "langfuse.trace.output", "langfuse.trace.metadata",
    "user.id", "session.id", "langfuse.trace.public", "langfuse.trace.tags", "langfuse.user.id",
    "langfuse.session.id", "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.observation.metadata.langfuse_session_id", "langfuse.observation.metadata.langfuse_tags",
)


def _has_trace_updates(attrs: dict[str, Any]) -> bool:
    return any(attrs.get(k) for k in _TRACE_UPDATE_KEYS) or any(
        k.startswith("langfuse.trace.metadata") for k in attrs)


def _metadata(attrs: dict[str, Any], domain: str) -> dict[str, Any]:
    """``langfuse.<domain>.metadata`` (a JSON object) merged with its dotted sub-keys."""
    prefix = f"langfuse.{domain}.metadata"
    out: dict[str, Any] = {}
    top = attrs.get(prefix) or attrs.get("langfuse.metadata")
    if isinstance(top, str):
        try:
            parsed = json.loads(top)
            if isinstance(parsed, dict):
                out.update(parsed)
        except ValueError:
            pass
    elif isinstance(top, dict):
        out.update(top)
    for key, value in attrs.items():
        for candidate in (prefix, "langfuse.metadata"):
            if key.startswith(candidate + "."):
                out[key[len(candidate) + 1:]] = value
    return out


_IO_KEYS = ("langfuse.trace.input", "langfuse.trace.output", "langfuse.observation.input",
            "langfuse.observation.output", "input.value", "output.value", "input", "output",
            "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result")


def _filtered_attributes(attrs: dict[str, Any]) -> dict[str, str]:
    """Span attributes not used as input/output, stringified (Langfuse's ``metadata.attributes``)."""
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in attrs.items()
        if key not in _IO_KEYS and not key.startswith(("gen_ai.prompt", "gen_ai.completion",
                                                         "llm.input_messages", "llm.output_messages"))
    }


def _input_output(attrs: dict[str, Any], events: list[dict[str, Any]], *, domain: str) -> tuple[Any, Any]:
    """Input and output of a span, trying the conventions Langfuse knows in its order."""
    if domain == "trace" and (attrs.get("langfuse.trace.input") or attrs.get("langfuse.trace.output")):
        return _json_or_text(attrs.get("langfuse.trace.input")), _json_or_text(attrs.get("langfuse.trace.output"))
    if attrs.get("langfuse.observation.input") is not None or attrs.get("langfuse.observation.output") is not None:
        return (_json_or_text(attrs.get("langfuse.observation.input")),
                _json_or_text(attrs.get("langfuse.observation.output")))
    message_events = [e for e in events if str(e.get("name", "")).startswith("gen_ai.") and
                      str(e.get("name")).endswith(".message")]
    choices = [e["attributes"] for e in events if e.get("name") == "gen_ai.choice"]
    if message_events or choices:
        inputs = [{"role": e["name"][len("gen_ai."):-len(".message")], **e["attributes"]} for e in message_events]
        return inputs or None, (choices[0] if len(choices) == 1 else choices or None)
    for in_key, out_key in (("input.value", "output.value"), ("input", "output")):
        if attrs.get(in_key) or attrs.get(out_key):
            return _json_or_text(attrs.get(in_key)), _json_or_text(attrs.get(out_key))
    prompt = _nested(attrs, "gen_ai.prompt")
    completion = _nested(attrs, "gen_ai.completion")
    if prompt is not None or completion is not None:
        return prompt, completion
    for in_key, out_key in (("gen_ai.input.messages", "gen_ai.output.messages"),
                            ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result")):
        if attrs.get(in_key) or attrs.get(out_key):
            return _json_or_text(attrs.get(in_key)), _json_or_text(attrs.get(out_key))
    return None, None


def _nested(attrs: dict[str, Any], prefix: str) -> Any:
    """``gen_ai.prompt.0.role``-style flattened attributes back into a list/dict."""
    if prefix in attrs:
        return _json_or_text(attrs[prefix])
    flat = {k[len(prefix) + 1:]: v for k, v in attrs.items() if k.startswith(prefix + ".")}
    if not flat:
        return None
    root: dict[str, Any] = {}
    for path, value in flat.items():
        node = root
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def _json_or_text(value: Any) -> Any:
    """Langfuse stores I/O strings as sent and parses them when they are JSON (any JSON,
    so ``"2"`` reads back as the number 2, like Langfuse's API does)."""
    if isinstance(value, str) and value[:1] in _JSON_STARTS:
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return value if parsed is None else parsed
    return value


_JSON_STARTS = frozenset('{["-0123456789tfn')


def _model_parameters(attrs: dict[str, Any]) -> dict[str, Any] | None:
    raw = attrs.get("langfuse.observation.model.parameters") or attrs.get("llm.invocation_parameters")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                return _sanitize_params(parsed)
        except ValueError:
            pass
    params = {k[len("gen_ai.request."):]: v for k, v in attrs.items()
              if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"}
    return _sanitize_params(params) if params else None


def _sanitize_params(params: dict[str, Any]) -> dict[str, Any]:
    """Model parameters are a flat map of strings and numbers in Langfuse."""
    return {k: v if isinstance(v, str | int | float) and not isinstance(v, bool) else json.dumps(v)
            for k, v in params.items()}


_USAGE_KEYS = {"prompt_tokens": "input", "completion_tokens": "output", "total_tokens": "total",
               "input_tokens": "input", "output_tokens": "output", "prompt": "input", "completion": "output"}


def _usage_details(attrs: dict[str, Any]) -> dict[str, int]:
    raw = attrs.get("langfuse.observation.usage_details")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                return {k: int(float(v)) for k, v in parsed.items() if _is_int_like(v)}
        except ValueError:
            pass
    usage: dict[str, int] = {}
    for key, value in attrs.items():
        if key.startswith("gen_ai.usage.") and key != "gen_ai.usage.cost":
            short = key[len("gen_ai.usage."):]
        elif key.startswith("llm.token_count."):
            short = key[len("llm.token_count."):]
        else:
            continue
        if _is_int_like(value):
            usage[_USAGE_KEYS.get(short, short)] = int(float(value))
    return usage


def _cost_details(attrs: dict[str, Any]) -> dict[str, float]:
    raw = attrs.get("langfuse.observation.cost_details")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                return {k: float(v) for k, v in parsed.items() if _is_int_like(v)}
        except ValueError:
            pass
    if _is_int_like(attrs.get("gen_ai.usage.cost")):
        return {"total": float(attrs["gen_ai.usage.cost"])}
    return {}


def _is_int_like(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_TYPE_BY_LANGFUSE = {t.lower(): t for t in (
    "SPAN", "GENERATION", "EVENT", "EMBEDDING", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "GUARDRAIL", "EVALUATOR")}
_TYPE_BY_OPENINFERENCE = {"CHAIN": "CHAIN", "RETRIEVER": "RETRIEVER", "LLM": "GENERATION", "EMBEDDING": "EMBEDDING",
                          "AGENT": "AGENT", "TOOL": "TOOL", "GUARDRAIL": "GUARDRAIL", "EVALUATOR": "EVALUATOR"}
_TYPE_BY_GENAI_OPERATION = {"chat": "GENERATION", "completion": "GENERATION", "text_completion": "GENERATION",
                            "generate_content": "GENERATION", "generate": "GENERATION", "embeddings": "EMBEDDING",
                            "invoke_agent": "AGENT", "create_agent": "AGENT", "execute_tool": "TOOL"}
_MODEL_KEYS = ("langfuse.observation.model.name", "gen_ai.request.model", "gen_ai.response.model",
               "llm.model_name", "model")


def _observation_type(attrs: dict[str, Any], resource: dict[str, Any], scope: dict[str, Any]) -> str:
    """Langfuse's ObservationTypeMapper, in priority order (Vercel AI SDK rules omitted)."""
    for key, table in (("langfuse.observation.type", _TYPE_BY_LANGFUSE),
                       ("openinference.span.kind", _TYPE_BY_OPENINFERENCE),
                       ("gen_ai.operation.name", _TYPE_BY_GENAI_OPERATION)):
        mapped = table.get(str(attrs.get(key)))
        if mapped:
            return mapped
    if attrs.get("gen_ai.tool.name") or attrs.get("gen_ai.tool.call.id"):
        return "TOOL"
    if any(attrs.get(k) for k in _MODEL_KEYS):
        return "GENERATION"
    return "SPAN"


def _experiment(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """``langfuse.experiment.*`` attributes (SDK experiment runner, Langfuse v4)."""
    if not attrs.get("langfuse.experiment.id"):
        return None
    return {
        "id": str(attrs["langfuse.experiment.id"]),
        "name": attrs.get("langfuse.experiment.name"),
        "description": attrs.get("langfuse.experiment.description"),
        "dataset_id": attrs.get("langfuse.experiment.dataset.id"),
        "item_id": attrs.get("langfuse.experiment.item.id"),
        "root_observation_id": attrs.get("langfuse.experiment.item.root_observation_id"),
        "expected_output": _json_or_text(attrs.get("langfuse.experiment.item.expected_output")),
        "metadata": _metadata_json(attrs.get("langfuse.experiment.metadata"), attrs, "langfuse.experiment.metadata"),
        "item_metadata": _metadata_json(attrs.get("langfuse.experiment.item.metadata"), attrs,
                                        "langfuse.experiment.item.metadata"),
    }


def _metadata_json(raw: Any, attrs: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                out.update(parsed)
        except ValueError:
            pass
    out.update({k[len(prefix) + 1:]: v for k, v in attrs.items() if k.startswith(prefix + ".")})
    return out or None
