"""The API's JSON parser: JSON, less what PostgreSQL cannot store.

A NUL character (`\\u0000`) is valid JSON, but PostgreSQL refuses it in text
and jsonb columns: without this check a string holding one reached `save()`
and answered 500. It is refused here with a 400 that says where."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser as BaseJSONParser


def nul_path(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON value (keys included) a NUL character is, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where or "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return where or "the body"
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{n}]") for n, child in enumerate(item))
    return None


class JSONParser(BaseJSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        where = nul_path(data)
        if where is not None:  # a field error, like the one CharField gives for its own value
            field = re.split(r"[.\[]", where, maxsplit=1)[0] if isinstance(data, dict) else "non_field_errors"
            raise ValidationError({field: [f"'{where}' holds a NUL character (\\u0000), which cannot be stored; "
                                           "remove it."]})
        return data
