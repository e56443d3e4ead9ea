"""Langfuse's structured filter conditions (the ``filter`` query parameter and the
``filters`` of metrics queries).

A condition is ``{"type", "column", "operator", "value", "key"?}``. The caller
supplies a column getter per entity; this module only knows the operators, so the
traces, observations, scores, experiments and metrics endpoints share one
implementation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from .errors import ApiError
from .models import parse_time

Getter = Callable[[Any, str, str | None], Any]  # (record, column, key) -> value

OPERATORS: dict[str, frozenset[str]] = {
    "datetime": frozenset({">", "<", ">=", "<="}),
    "string": frozenset({"=", "contains", "does not contain", "starts with", "ends with", "matches"}),
    "stringOptions": frozenset({"any of", "none of"}),
    "categoryOptions": frozenset({"any of", "none of"}),
    "arrayOptions": frozenset({"any of", "none of", "all of"}),
    "number": frozenset({"=", ">", "<", ">=", "<=", "!="}),
    "stringObject": frozenset({"=", "contains", "does not contain", "starts with", "ends with", "matches"}),
    "numberObject": frozenset({"=", ">", "<", ">=", "<=", "!="}),
    "booleanObject": frozenset({"=", "<>"}),
    "boolean": frozenset({"=", "<>"}),
    "null": frozenset({"is null", "is not null"}),
}


def parse_filter_param(raw: str | None) -> list[dict[str, Any]] | None:
    """Parse the JSON ``filter`` query parameter (400 when it is not a list of conditions)."""
    if raw in (None, ""):
        return None
    try:
        conditions = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Invalid filter: not valid JSON", violation=True) from None
    return check_conditions(conditions)


def check_conditions(conditions: Any) -> list[dict[str, Any]]:
    if not isinstance(conditions, list):
        raise ApiError(400, "Invalid filter: expected a JSON array of conditions", violation=True)
    for cond in conditions:
        if not isinstance(cond, dict) or not {"type", "column", "operator"} <= cond.keys():
            raise ApiError(400, f"Invalid filter condition {cond!r}: type, column and operator are required",
                           violation=True)
        kind, op = cond["type"], cond["operator"]
        if kind not in OPERATORS:
            raise ApiError(400, f"Invalid filter type {kind!r}", violation=True)
        if op not in OPERATORS[kind]:
            raise ApiError(400, f"Invalid operator {op!r} for filter type {kind!r}", violation=True)
        if kind != "null" and "value" not in cond:
            raise ApiError(400, f"Filter on {cond['column']!r} needs a value", violation=True)
        if kind.endswith("Object") and not cond.get("key"):
            raise ApiError(400, f"Filter type {kind!r} needs a key", violation=True)
    return conditions


def attr_equals(attr: str, value: Any) -> Callable[[Any], bool]:
    """A record predicate ``record.<attr> == value`` (for the simple query-parameter filters)."""
    return lambda record: getattr(record, attr) == value


def attr_in(attr: str, values: Iterable[Any]) -> Callable[[Any], bool]:
    """A record predicate ``record.<attr> in values``."""
    wanted = frozenset(values)
    return lambda record: getattr(record, attr) in wanted


def matches_all(record: Any, conditions: Iterable[dict[str, Any]], getter: Getter) -> bool:
    return all(matches(record, cond, getter) for cond in conditions)


def matches(record: Any, cond: dict[str, Any], getter: Getter) -> bool:
    """Evaluate one condition against one record."""
    kind, op, expected = cond["type"], cond["operator"], cond.get("value")
    value = getter(record, cond["column"], cond.get("key"))
    if kind == "null":
        return (value is None) == (op == "is null")
    if kind == "datetime":
        return _compare_datetime(value, op, expected)
    if kind in ("string", "stringObject"):
        return _compare_string(value, op, expected)
    if kind in ("number", "numberObject"):
        return _compare_number(value, op, expected)
    if kind in ("boolean", "booleanObject"):
        equal = value is not None and bool(value) == _to_bool(expected)
        return equal if op == "=" else not equal
    if kind in ("stringOptions", "categoryOptions"):
        options = set(expected if isinstance(expected, list) else [expected])
        found = (value in options) if not isinstance(value, list) else bool(options & set(value))
        return found if op == "any of" else not found
    if kind == "arrayOptions":
        values = set(value or []) if isinstance(value, list | tuple | set) else ({value} if value else set())
        options = set(expected if isinstance(expected, list) else [expected])
        if op == "any of":
            return bool(values & options)
        if op == "all of":
            return options <= values
        return not values & options
    return False


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _compare_datetime(value: Any, op: str, expected: Any) -> bool:
    if value is None:
        return False
    try:
        other = parse_time(expected)
    except (TypeError, ValueError):
        raise ApiError(400, f"Invalid datetime filter value {expected!r}", violation=True) from None
    left = value if isinstance(value, datetime) else parse_time(value)
    return _numeric_op(left, op, other)


def _compare_string(value: Any, op: str, expected: Any) -> bool:
    if value is None:
        return op == "does not contain"
    text = value if isinstance(value, str) else json.dumps(value)
    needle = str(expected)
    if op == "=":
        return text == needle
    if op == "contains":
        return needle in text
    if op == "matches":
        return needle.lower() in text.lower()
    if op == "does not contain":
        return needle not in text
    if op == "starts with":
        return text.startswith(needle)
    return text.endswith(needle)


def _compare_number(value: Any, op: str, expected: Any) -> bool:
    if value is None:
        return False
    try:
        left, right = float(value), float(expected)
    except (TypeError, ValueError):
        return False
    return _numeric_op(left, op, right)


def _numeric_op(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == ">":
        return left > right
    if op == "<":
        return left < right
    if op == ">=":
        return left >= right
    return left <= right


def metadata_value(metadata: Any, key: str | None) -> Any:
    """Look up ``key`` in a metadata dict (dotted keys reach into nested dicts)."""
    if not isinstance(metadata, dict) or not key:
        return None
    if key in metadata:
        return metadata[key]
    current: Any = metadata
    for part in key.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current
