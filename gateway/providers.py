"""What each provider type needs, and how a deployment becomes LiteLLM
parameters. Kept free of Django models so the config renderer can use it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from gateway.plugin.secretrefs import find_secret_reference, is_secret_reference
from portal import secretrefs


@dataclass(frozen=True)
class ProviderSpec:
    litellm_prefix: str
    required_settings: tuple[str, ...] = ()
    optional_settings: tuple[str, ...] = ()
    required_secrets: tuple[str, ...] = ()
    optional_secrets: tuple[str, ...] = ()

    @property
    def settings(self) -> tuple[str, ...]:
        return self.required_settings + self.optional_settings

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.required_secrets + self.optional_secrets


PROVIDERS: dict[str, ProviderSpec] = {
    "openai": ProviderSpec("openai", optional_settings=("api_base", "organization"), required_secrets=("api_key",)),
    "anthropic": ProviderSpec("anthropic", optional_settings=("api_base",), required_secrets=("api_key",)),
    "azure": ProviderSpec("azure", required_settings=("api_base", "api_version"), required_secrets=("api_key",)),
    "bedrock": ProviderSpec("bedrock", required_settings=("aws_region_name",),
                            required_secrets=("aws_access_key_id", "aws_secret_access_key"),
                            optional_secrets=("aws_session_token",)),
    "vertex_ai": ProviderSpec("vertex_ai", required_settings=("vertex_project", "vertex_location"),
                              required_secrets=("vertex_credentials",)),
    "openai_compatible": ProviderSpec("openai", required_settings=("api_base",), optional_secrets=("api_key",)),
}

MAX_VALUE_LENGTH = 20_000

# LiteLLM parameters a route's deployment may set. Credentials and endpoints
# come from the provider credential, never from here.
DEPLOYMENT_PARAMS: dict[str, type | tuple[type, ...]] = {
    "mock_response": str,
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": int,
    "rpm": int,
    "tpm": int,
    "timeout": (int, float),
    "stream_timeout": (int, float),
    "max_retries": int,
    "drop_params": bool,
    "input_cost_per_token": (int, float),
    "output_cost_per_token": (int, float),
    "region_name": str,
    "api_version": str,
    "extra_headers": dict,
}


def _check_str_map(value: Any, field: str, allowed: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationError({field: "Expected an object of strings."})
    errors = {}
    for k, v in value.items():
        if k not in allowed:
            errors[k] = f"Unknown field; this provider takes {', '.join(allowed) or 'none'}."
        elif v is not None and (not isinstance(v, str) or len(v) > MAX_VALUE_LENGTH or "\x00" in v):
            errors[k] = f"Expected a string of at most {MAX_VALUE_LENGTH} characters."
        elif v is not None and is_secret_reference(v):
            errors[k] = secretrefs.MESSAGE
    if errors:
        raise ValidationError({field: [f"{k}: {m}" for k, m in errors.items()]})
    return value


def validate_settings(provider: str, value: Any) -> dict[str, str]:
    spec = PROVIDERS[provider]
    value = _check_str_map(value, "settings", spec.settings)
    missing = [k for k in spec.required_settings if not value.get(k)]
    if missing:
        raise ValidationError({"settings": [f"{k}: This setting is required for {provider}." for k in missing]})
    base = value.get("api_base")
    if base:
        # The gateway calls it with the credential's secret: the outbound URL policy applies.
        from portal.outbound import OutboundRefused, check_url

        try:
            check_url(base)
        except OutboundRefused as exc:
            raise ValidationError({"settings": [f"api_base: {exc}"]}) from None
    return {k: v for k, v in value.items() if v is not None}


def merge_secrets(provider: str, current: dict[str, str], update: Any) -> dict[str, str]:
    """Secrets are write-only: an update sets the fields it names, `null`
    clears one, and fields it does not name keep their value."""
    spec = PROVIDERS[provider]
    update = _check_str_map(update, "secrets", spec.secrets)
    merged = {k: v for k, v in current.items() if k in spec.secrets}
    for k, v in update.items():
        if v is None or v == "":
            merged.pop(k, None)
        else:
            merged[k] = v
    missing = [k for k in spec.required_secrets if not merged.get(k)]
    if missing:
        raise ValidationError({"secrets": [f"{k}: This secret is required for {provider}." for k in missing]})
    if isinstance(update.get("vertex_credentials"), str):
        _check_vertex_credentials(update["vertex_credentials"])
    return merged


# Google credential types that carry the credential itself. The others make LiteLLM's
# google-auth read a file or call a URL of the JSON's choosing (external_account's
# credential_source, impersonation chains) on the gateway's host.
VERTEX_CREDENTIAL_TYPES = ("service_account", "authorized_user")


def _check_vertex_credentials(value: str) -> None:
    """LiteLLM takes a vertex_credentials string that names an existing file as
    that file's path: only the JSON key itself is accepted."""
    message = ('vertex_credentials: Paste the JSON key itself: an object whose "type" is '
               f'{" or ".join(VERTEX_CREDENTIAL_TYPES)}.')
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValidationError({"secrets": [message]}) from None
    if not isinstance(parsed, dict) or parsed.get("type") not in VERTEX_CREDENTIAL_TYPES:
        raise ValidationError({"secrets": [message]})
    error = secretrefs.secret_reference_error(parsed, "vertex_credentials")
    if error:
        raise ValidationError({"secrets": [error]})


def validate_deployment_params(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError({"litellm_params": "Expected an object."})
    errors = []
    for k, v in value.items():
        expected = DEPLOYMENT_PARAMS.get(k)
        if expected is None:
            errors.append(f"{k}: Not an allowed parameter; allowed: {', '.join(sorted(DEPLOYMENT_PARAMS))}.")
        elif isinstance(v, bool) and expected is not bool or not isinstance(v, expected):
            errors.append(f"{k}: Wrong type.")
        elif isinstance(v, str) and (len(v) > MAX_VALUE_LENGTH or "\x00" in v):
            errors.append(f"{k}: At most {MAX_VALUE_LENGTH} characters, no NUL.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not (0 <= v <= 1e9):
            errors.append(f"{k}: Out of range.")
        elif isinstance(v, dict) and not all(isinstance(n, str) and isinstance(h, str) for n, h in v.items()):
            errors.append(f"{k}: Expected an object of strings (header names and values).")
        elif (error := secretrefs.secret_reference_error(v, k)) is not None:
            errors.append(error)
    if errors:
        raise ValidationError({"litellm_params": errors})
    return value


def validate_deployment_model(model: Any, position: int) -> str:
    """A deployment's provider model id; LiteLLM must not take it for a reference."""
    if not isinstance(model, str) or find_secret_reference(model) is not None:
        raise ValidationError({"deployments": [f"[{position}] model: {secretrefs.MESSAGE}"]})
    return model


def litellm_params(provider: str | None, model: str, settings: dict[str, str], secrets: dict[str, str],
                   params: dict[str, Any]) -> dict[str, Any]:
    """The `litellm_params` of one deployment in LiteLLM's model list."""
    prefix = PROVIDERS[provider].litellm_prefix if provider else "openai"
    out: dict[str, Any] = {"model": f"{prefix}/{model}"}
    out.update({k: v for k, v in settings.items() if k != "organization"})
    out.update(secrets)
    if provider == "openai_compatible" and "api_key" not in secrets:
        out["api_key"] = "none"  # LiteLLM's OpenAI client insists on a key; self-hosted servers ignore it
    out.update(params)
    return out
