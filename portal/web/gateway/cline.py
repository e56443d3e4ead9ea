"""The Cline CLI's one-line setup for a key, with the CLI's real flags (cline/cline `cli/src/index.ts`,
command `auth`): `-p/--provider`, `-k/--apikey`, `-m/--modelid`, `-b/--baseurl`. The CLI's quick setup
takes a base URL only for its OpenAI-compatible providers (`openai`, `openai-native`), so the command
configures the provider `openai` (OpenAI Compatible) against the gateway; the `providers.json` download
configures the `litellm` provider. Both reach the same gateway with the same key and route."""

from __future__ import annotations

import shlex


def auth_command(*, api_key: str, model: str, base_url: str) -> str:
    """`cline auth ...`, each value quoted for a POSIX shell."""
    parts = ["cline", "auth", "--provider", "openai", "--apikey", api_key, "--modelid", model or "<route>",
             "--baseurl", base_url]
    return " ".join(shlex.quote(p) for p in parts)
