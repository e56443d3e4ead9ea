"""Refusing tenant values that LiteLLM would resolve as a secret reference
(`os.environ/NAME`, `oidc/...`, a secret manager's pointer) instead of taking
them as they are: an org admin could otherwise read the gateway's environment
or send its secrets to a host of their choosing. The detection itself is in
gateway/plugin/secretrefs.py, shared with the plugin."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from gateway.plugin.secretrefs import find_secret_reference

MESSAGE = ("Looks like a secret reference (os.environ/..., oidc/..., a secret manager's path); "
           "the gateway does not resolve references: enter the value itself.")


def secret_reference_error(value: Any, label: str) -> str | None:
    """`"<label>[.<where>]: <why>"` when `value` holds a reference, else None."""
    where = find_secret_reference(value)
    if where is None:
        return None
    return f"{label}.{where}: {MESSAGE}" if where else f"{label}: {MESSAGE}"


def refuse_secret_references(value: Any, field: str) -> None:
    """Raise a ValidationError on `field` when `value` (a string, or nested
    dicts and lists of them) holds a secret reference anywhere. The message
    names where, never the value."""
    error = secret_reference_error(value, field)
    if error is not None:
        raise ValidationError({field: error})
