"""A ready Cline setup for a key: the VS Code fields and the CLI's
`providers.json` (Cline reads `<data-dir>/settings/providers.json`; the CLI's
data dir is `~/.cline/data` unless `--config` says otherwise)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone


def cline_setup(*, api_key: str, model: str) -> dict[str, Any]:
    base_url = f"{settings.GATEWAY_PUBLIC_URL}/v1"
    providers_json = {
        "version": 1,
        "lastUsedProvider": "litellm",
        "providers": {
            "litellm": {
                "settings": {"provider": "litellm", "apiKey": api_key, "model": model, "baseUrl": base_url},
                "updatedAt": timezone.now().isoformat().replace("+00:00", "Z"),
            }
        },
    }
    return {
        "base_url": base_url,
        "api_key": api_key,
        "model": model,
        "vscode": {"API Provider": "LiteLLM", "Base URL": base_url, "API Key": api_key, "Model": model},
        "cli_providers_json_path": "~/.cline/data/settings/providers.json",
        "cli_providers_json": providers_json,
    }
