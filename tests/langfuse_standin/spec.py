"""The Langfuse OpenAPI spec as a request/response validator.

The stand-in is only useful if it is as strict as the real API contract, so every
request it serves and every response it sends goes through this module. The spec
is OpenAPI 3.0, which is *almost* JSON Schema; `convert_schema` bridges the gap:

* ``nullable: true`` becomes ``anyOf: [<schema>, {"type": "null"}]``;
* ``$ref: '#/components/schemas/X'`` points into one registry resource holding all
  converted component schemas, so references resolve lazily and recursively;
* ``oneOf`` becomes ``anyOf``. The spec is Fern-generated and uses ``oneOf`` for
  union types whose branches overlap (``MapValue``: an integer is also a number;
  ``UsageDetails``: an OpenAI usage object is also a ``{str: int}`` map). The
  Langfuse server validates with zod unions, which accept the first matching
  branch, i.e. ``anyOf`` semantics. Discriminated unions stay exclusive because
  every branch pins and requires its discriminator.

A few narrow spec defects are patched in `SPEC_PATCHES`; each entry says why.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .fastcheck import Check, FastChecker, Unsupported

SPEC_DIR = Path(__file__).resolve().parent.parent / "data" / "langfuse"
SPEC_URI = "urn:langfuse:openapi"

# Endpoints that a Langfuse v3 server does not serve although the exported v3 spec
# lists them: they are backed by the v4 events table (the brief of the stand-in and
# the v4 upgrade guide call them "v4 endpoints"). Paths that exist only in the v4
# spec file are excluded automatically because the v3 spec file does not list them.
V4_ONLY_PATHS = frozenset({
    "/api/public/v2/observations",
    "/api/public/v3/scores",
    "/api/public/v2/metrics",
})

# (component schema, JSON pointer inside it, replacement, reason)
SPEC_PATCHES: tuple[tuple[str, tuple[str, ...], dict[str, Any], str], ...] = (
    (
        "OtelAttributeValue", ("properties", "intValue"),
        {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^-?\d+$"}], "nullable": True},
        "OTLP/JSON encodes int64 attribute values as decimal strings (protobuf JSON mapping); "
        "the spec only allows JSON integers, which would reject every standard OTLP/JSON exporter.",
    ),
)

# Validate with both the fast checker and jsonschema and report disagreements as
# errors (the stand-in's own tests switch this on; see `SchemaValidator`).
CROSS_CHECK = os.environ.get("LANGFUSE_STANDIN_CROSS_CHECK") == "1"

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)$"
)
FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time with an explicit offset (zod's ``datetime({offset: true})``)."""
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


def convert_schema(node: Any) -> Any:
    """Translate an OpenAPI 3.0 schema object into JSON Schema 2020-12 (see module doc)."""
    if isinstance(node, list):
        return [convert_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = SPEC_URI + value if value.startswith("#") else value
        elif key == "oneOf":
            out["anyOf"] = convert_schema(value)
        elif key in ("nullable", "discriminator", "example", "examples", "xml", "externalDocs"):
            continue
        elif key in ("enum", "default", "const", "required", "description", "title"):
            out[key] = value
        elif key == "properties":
            out[key] = {name: convert_schema(sub) for name, sub in value.items()}
        else:
            out[key] = convert_schema(value)
    if node.get("nullable") is True and _constrains(out):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _constrains(schema: dict[str, Any]) -> bool:
    """Whether a schema rejects anything at all (``{}`` with a description accepts null already)."""
    return any(k in schema for k in ("type", "$ref", "enum", "anyOf", "allOf", "properties", "const", "items"))


@dataclass(frozen=True)
class Param:
    """One query or path parameter of an operation."""

    name: str
    location: str
    required: bool
    kind: str  # array | integer | number | boolean | string
    schema: dict[str, Any]


@dataclass
class Operation:
    """One (method, path template) of the spec with its converted schemas."""

    method: str
    template: str
    operation_id: str
    deprecated: bool
    secured: bool
    params: list[Param]
    body_schema: dict[str, Any] | None
    body_required: bool
    responses: dict[str, dict[str, Any] | None]
    regex: re.Pattern[str]
    param_names: list[str]
    _validators: dict[str, SchemaValidator] = field(default_factory=dict, repr=False)


class Spec:
    """A loaded spec for one Langfuse major version.

    Use `load_spec` (cached) instead of constructing it per server: parsing and
    converting the 17k-line YAML takes a moment, validators are compiled lazily.
    """

    def __init__(self, version: int) -> None:
        if version not in (3, 4):
            raise ValueError(f"unsupported Langfuse version {version}")
        self.version = version
        raw = yaml.load((SPEC_DIR / f"openapi-v{version}.yml").read_text(), Loader=yaml.CSafeLoader)
        self.raw = raw
        schemas = {name: convert_schema(schema) for name, schema in raw["components"]["schemas"].items()}
        _apply_patches(schemas)
        self.schemas = schemas
        resource = Resource.from_contents({"components": {"schemas": schemas}}, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource(SPEC_URI, resource)
        self.operations: list[Operation] = []
        self._by_template: dict[str, dict[str, Operation]] = {}
        for template, methods in raw["paths"].items():
            if version == 3 and template in V4_ONLY_PATHS:
                continue
            for method, op in methods.items():
                operation = self._build_operation(method.upper(), template, op)
                self.operations.append(operation)
                self._by_template.setdefault(template, {})[operation.method] = operation
        # Literal segments must win over parameters: /scores/{id} vs /v3/scores.
        self._templates = sorted(self._by_template, key=lambda t: (t.count("{"), -len(t)))
        self._fast = FastChecker({"components": {"schemas": schemas}}, SPEC_URI, {"date-time": _is_date_time})
        self._component_validators: dict[str, SchemaValidator] = {}

    # ----------------------------------------------------------------- building
    def _build_operation(self, method: str, template: str, op: dict[str, Any]) -> Operation:
        params = [self._build_param(p) for p in op.get("parameters", [])]
        body = op.get("requestBody")
        body_schema = None
        if body:
            json_content = body.get("content", {}).get("application/json")
            if json_content is not None:
                body_schema = convert_schema(json_content.get("schema", {}))
        responses: dict[str, dict[str, Any] | None] = {}
        for status, response in op.get("responses", {}).items():
            content = (response or {}).get("content", {}).get("application/json")
            responses[str(status)] = convert_schema(content.get("schema", {})) if content is not None else None
        names = re.findall(r"{([^}]+)}", template)
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "([^/]+)", re.escape(template)) + "/?$"
        return Operation(
            method=method, template=template, operation_id=op.get("operationId", ""),
            deprecated=bool(op.get("deprecated")), secured=bool(op.get("security")),
            params=params, body_schema=body_schema, body_required=bool(body and body.get("required")),
            responses=responses, regex=re.compile(pattern), param_names=names,
        )

    def _build_param(self, param: dict[str, Any]) -> Param:
        schema = param.get("schema", {})
        return Param(
            name=param["name"], location=param["in"], required=bool(param.get("required")),
            kind=self._kind(schema), schema=convert_schema(schema),
        )

    def _kind(self, schema: dict[str, Any]) -> str:
        """The JSON type a query string has to be coerced to (follows one `$ref`)."""
        if "$ref" in schema:
            schema = self.raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        kind = schema.get("type", "string")
        return kind if kind in ("array", "integer", "number", "boolean") else "string"

    # ----------------------------------------------------------------- matching
    def match(self, method: str, raw_path: str) -> tuple[Operation | None, dict[str, str], bool]:
        """Find the operation for a request.

        Returns ``(operation, path_params, path_known)``; ``path_known`` is True when
        the path exists but not for this method (the caller answers 405).
        """
        for template in self._templates:
            by_method = self._by_template[template]
            any_op = next(iter(by_method.values()))
            found = any_op.regex.match(raw_path)
            if not found:
                continue
            values = {name: unquote(v) for name, v in zip(any_op.param_names, found.groups(), strict=True)}
            return by_method.get(method), values, True
        return None, {}, False

    def operation(self, method: str, template: str) -> Operation | None:
        return self._by_template.get(template, {}).get(method)

    @property
    def templates(self) -> list[str]:
        return list(self._by_template)

    # --------------------------------------------------------------- validation
    def coerce_query(self, op: Operation, query: dict[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
        """Convert query strings to the declared parameter types and validate them.

        Repeated parameters become lists for array parameters; for scalars the last
        value wins (like Next.js/zod). Undeclared parameters are passed through as
        strings, Langfuse ignores them too.
        """
        values: dict[str, Any] = {k: v[-1] for k, v in query.items() if v}
        errors: list[str] = []
        for param in op.params:
            if param.location != "query":
                continue
            raw = query.get(param.name)
            if not raw:
                if param.required:
                    errors.append(f"query parameter '{param.name}' is required")
                values.pop(param.name, None)
                continue
            try:
                value = _coerce(param.kind, raw)
            except ValueError as exc:
                errors.append(f"query parameter '{param.name}': {exc}")
                continue
            message = self._first_error(self._validator(op, f"param:{param.name}", param.schema), value)
            if message:
                errors.append(f"query parameter '{param.name}': {message}")
                continue
            values[param.name] = value
        return values, errors

    def validate_body(self, op: Operation, body: Any) -> list[str]:
        if op.body_schema is None:
            return []
        message = self._first_error(self._validator(op, "body", op.body_schema), body)
        return [f"request body: {message}"] if message else []

    def response_schema(self, op: Operation, status: int) -> tuple[dict[str, Any] | None, bool]:
        """The schema for a response status and whether the status is declared.

        The real server answers some creations with 201 where the spec only declares
        200 (POST /projects, POST /projects/{id}/apiKeys); any 2xx is therefore
        checked against the single declared 2xx schema.
        """
        key = str(status)
        if key in op.responses:
            return op.responses[key], True
        if 200 <= status < 300:
            declared = [s for s in op.responses if s.startswith("2")]
            if declared:
                return op.responses[declared[0]], True
            return None, False
        return None, True  # undeclared error statuses (409, 429, 5xx) are allowed

    def validate_response(self, op: Operation, status: int, body: Any) -> list[str]:
        schema, declared = self.response_schema(op, status)
        if not declared:
            return [f"status {status} is not declared by the spec"]
        if schema is None:
            return []
        message = self._first_error(self._validator(op, f"response:{status}", schema), body)
        return [message] if message else []

    def validate_component(self, name: str, instance: Any) -> str | None:
        """Validate against a component schema; returns the first error or None."""
        validator = self._component_validators.get(name)
        if validator is None:
            validator = self._make_validator({"$ref": f"{SPEC_URI}#/components/schemas/{name}"})
            self._component_validators[name] = validator
        return validator.first_error(instance)

    def _validator(self, op: Operation, key: str, schema: dict[str, Any]) -> SchemaValidator:
        validator = op._validators.get(key)
        if validator is None:
            validator = self._make_validator(schema)
            op._validators[key] = validator
        return validator

    def _make_validator(self, schema: dict[str, Any]) -> SchemaValidator:
        try:
            fast: Check | None = self._fast.compile(schema)
        except Unsupported:
            fast = None
        return SchemaValidator(Draft202012Validator(schema, registry=self.registry, format_checker=FORMAT_CHECKER),
                               fast)

    @staticmethod
    def _first_error(validator: SchemaValidator, instance: Any) -> str | None:
        return validator.first_error(instance)


@dataclass
class SchemaValidator:
    """jsonschema for the verdict and the message, the fast checker to skip it when valid."""

    full: Draft202012Validator
    fast: Check | None

    def first_error(self, instance: Any) -> str | None:
        if self.fast is not None and not CROSS_CHECK and self.fast(instance):
            return None
        error = best_match(self.full.iter_errors(instance))
        if CROSS_CHECK and self.fast is not None:
            fast_ok = self.fast(instance)
            if fast_ok != (error is None):
                verdict = describe_error(error) if error is not None else "valid"
                return f"fast checker (valid={fast_ok}) disagrees with jsonschema ({verdict})"
        return describe_error(error) if error is not None else None


def describe_error(error: ValidationError | None) -> str:
    """A short, human-readable message like zod's: where, and what is wrong."""
    if error is None:
        return "invalid"
    path, message = _narrow(error)
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(root)"
    if len(message) > 300:
        message = message[:300] + "..."
    return f"{where.lstrip('.')}: {message}"


def _narrow(error: ValidationError) -> tuple[list[Any], str]:
    """Look inside ``anyOf`` failures for the error the client most likely means.

    "X is not valid under any of the given schemas" is useless for a union: when
    every branch rejects a discriminator (``type``, ``dataType``) say which values
    are allowed; when exactly one branch accepts the discriminator (or one is the
    non-null side of a nullable), report that branch's error instead.
    """
    while error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        discriminator_paths = [
            {tuple(e.relative_path) for e in errs if e.validator in ("enum", "const")} for errs in branches.values()
        ]
        common = set.intersection(*discriminator_paths) if discriminator_paths else set()
        if common and len(branches) == len(error.validator_value):
            path = sorted(common)[0]
            allowed = sorted({
                value for errs in branches.values() for e in errs if tuple(e.relative_path) == path
                for value in (e.validator_value if e.validator == "enum" else [e.validator_value])
            }, key=str)
            bad = next(e.instance for errs in branches.values() for e in errs if tuple(e.relative_path) == path)
            return [*error.absolute_path, *path], f"{bad!r} is not one of {allowed}"
        candidates = [
            errs for errs in branches.values()
            if not any(e.validator in ("enum", "const") for e in errs)
            and not all(e.validator == "type" and e.validator_value == "null" for e in errs)
        ]
        if len(candidates) != 1:
            break
        error = best_match(candidates[0]) or error
    return list(error.absolute_path), error.message


def _coerce(kind: str, raw: list[str]) -> Any:
    if kind == "array":
        return list(raw)
    value = raw[-1]
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if kind == "boolean":
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _apply_patches(schemas: dict[str, Any]) -> None:
    for name, pointer, replacement, _reason in SPEC_PATCHES:
        if name not in schemas:
            continue
        target = schemas[name]
        for part in pointer[:-1]:
            target = target[part]
        if pointer[-1] in target:
            target[pointer[-1]] = convert_schema(replacement)


@functools.cache
def load_spec(version: int) -> Spec:
    """The spec for a Langfuse major version, parsed once per process."""
    return Spec(version)


def paths_missing_in(version: int) -> list[str]:
    """Path templates the other major version serves but this one does not."""
    mine = set(load_spec(version).templates)
    return sorted(t for t in load_spec(7 - version).templates if t not in mine)
