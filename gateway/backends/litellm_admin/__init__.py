"""The "litellm-admin" backend: the portal drives LiteLLM's own management
API (for a LiteLLM that keeps its own Postgres) instead of our plugin.

Object mapping (ids are stable, so a push is an idempotent upsert):
- team `T`          -> LiteLLM team `portal-team-T` (`/team/new`, `/team/update`, `/team/delete`)
- route deployment  -> LiteLLM model `portal-dep-D` in group `<org slug>/<route>`
- key secret        -> one LiteLLM key per SHA-256 (current secret and rotated-out
                       ones still in their grace period); LiteLLM is told the
                       plaintext once, by `register_secret`, and only the hash later
- organization, project: LiteLLM has no free equivalent (its organizations
  are an Enterprise feature), so their budgets are enforced in managed mode only.

Modules: `client` (the HTTP client and its errors), `payloads` (what LiteLLM
should hold), `listing` (what it holds), `backend` (`AdminBackend`: pushing),
`drift` (comparing), `spend` (its spend logs back as usage records).

After switching a running portal to this mode, run `gateway_sync` once."""

from gateway.backends.litellm_admin.backend import AdminBackend
from gateway.backends.litellm_admin.client import AdminClient, LiteLLMAdminError, LiteLLMNotFound
from gateway.backends.litellm_admin.payloads import NO_MODELS

__all__ = ["NO_MODELS", "AdminBackend", "AdminClient", "LiteLLMAdminError", "LiteLLMNotFound"]
