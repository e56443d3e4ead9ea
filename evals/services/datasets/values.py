"""What an item may hold: an input, JSON values PostgreSQL can store (no NUL, no lone surrogate), an id
of 1 to 100 characters, at most MAX_ITEM_CHARS as JSON; and `ItemRow`, one item about to be written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from evals.models import DatasetItem
from evals.services.datasets.limits import MAX_ITEM_CHARS


@dataclass
class ItemRow:
    """One item to write; without `external_id` it gets a new one."""

    input: Any
    expected_output: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    external_id: str | None = None
    source_trace_id: str = ""


def text_problem(value: Any) -> str | None:
    """What makes a JSON value unstorable in PostgreSQL (NUL characters, lone surrogates), if anything."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, str):
            if "\x00" in current:
                return "contains a NUL character"
            try:
                current.encode("utf-8")
            except UnicodeEncodeError:
                return "contains text that is not valid Unicode"
    return None


def item_problems(item_input: Any, expected_output: Any, metadata: Any) -> list[str]:
    problems = []
    if item_input is None:
        problems.append("input is missing")
    if not isinstance(metadata, dict):
        problems.append("metadata is not a JSON object")
    for name, value in (("input", item_input), ("expected_output", expected_output), ("metadata", metadata)):
        problem = text_problem(value)
        if problem:
            problems.append(f"{name} {problem}")
    if not problems and len(json.dumps([item_input, expected_output, metadata], default=str)) > MAX_ITEM_CHARS:
        problems.append(f"the item is larger than {MAX_ITEM_CHARS} characters as JSON")
    return problems


def id_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return "id is not a string"
    text = str(value).strip()
    if not text or len(text) > 100:
        return "id must have 1 to 100 characters"
    return text_problem(text)


def check_item(data: dict[str, Any], item: DatasetItem | None = None) -> None:
    """The item's values as they would be saved: storable, and not too large."""
    values = {name: data.get(name, getattr(item, name, None)) for name in ("input", "expected_output", "metadata")}
    errors: dict[str, str] = {}
    for name, value in values.items():
        problem = text_problem(value)
        if problem:
            errors[name] = f"The value {problem}."
    if data.get("external_id") is not None and (problem := id_problem(data["external_id"])):
        errors["external_id"] = f"The {problem}."
    if not errors and len(json.dumps(list(values.values()), default=str)) > MAX_ITEM_CHARS:
        errors["input"] = f"The item is larger than {MAX_ITEM_CHARS} characters as JSON."
    if errors:
        raise ValidationError(errors)
