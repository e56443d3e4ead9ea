"""What the gateway admits from a request body, decided before LiteLLM sees it.

LiteLLM reads dozens of its own control fields from a request body (fallbacks
to other model groups, `user_config` with a model list of the caller's,
`api_base`/`api_key`, `mock_response`, `no-log`, caching and retry switches,
metadata that steers logging, tags and budgets...). Each route therefore
admits only the fields of its public OpenAI or Anthropic API, checked for
their types: a known LiteLLM control field gets a 400 that names it, any
other unknown field a 400 too, and the few fields clients send harmlessly
(`metadata`, Cline's `litellm_session_id`) are dropped. The body LiteLLM gets
is the one checked here: the client's bytes when nothing was dropped (both
parsers agree on a body this module accepts: strict UTF-8, no NaN, the last
of duplicate keys), else the checked body re-encoded.

Standard library only. Inside: `errors` (refusals, limits), `parsing`, `checks` (field checks),
`parts` (content parts), `tools`, `messages`, `admission` (each route's fields; `admit`)."""

from __future__ import annotations

from gateway.plugin.requests import errors
from gateway.plugin.requests.admission import ROUTES, admit
from gateway.plugin.requests.errors import Refusal, invalid, too_large
from gateway.plugin.requests.parsing import encode, media_type, parse

__all__ = ["ROUTES", "Refusal", "admit", "encode", "errors", "invalid", "media_type", "parse", "too_large"]
