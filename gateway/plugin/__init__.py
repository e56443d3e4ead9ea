"""The portal's plugin for the stock LiteLLM proxy (managed mode).

`auth.user_api_key_auth` is LiteLLM's custom auth, `callbacks.portal_callbacks`
its callback; both read what the portal pushed into Redis (`contract`). This
package imports only LiteLLM, the Redis client and the standard library, and
importing any of it changes nothing in LiteLLM.

`install()` puts the plugin's front door in place: the ASGI guard around
LiteLLM's app (`guard`) and the plugin's own routes (`routes`). The proxy calls
it through LiteLLM's worker startup hook, in every worker before it loads its
config or serves a request:

    LITELLM_WORKER_STARTUP_HOOKS=gateway.plugin:install

(set by `manage.py gateway`, docker-compose.yml and stacks/litellm/config.yaml's
notes). A proxy started without it refuses every request that reaches custom
auth (503) rather than serve unguarded (`auth.user_api_key_auth`)."""

from __future__ import annotations

STARTUP_HOOK = "gateway.plugin:install"  # in LITELLM_WORKER_STARTUP_HOOKS


def startup_hooks(existing: str = "") -> str:
    """LITELLM_WORKER_STARTUP_HOOKS with the plugin's hook in it (after an operator's own, if any)."""
    hooks = [h.strip() for h in existing.split(",") if h.strip() and h.strip() != STARTUP_HOOK]
    return ",".join([*hooks, STARTUP_HOOK])


def install() -> None:
    """Install the guard and the plugin's routes into LiteLLM's app; a second call does nothing."""
    from gateway.plugin import guard, logs, routes, version

    logs.install()  # JSON (or plain) lines with the request id, before anything logs
    routes.install()
    guard.install()
    version.install()  # the health route and the contract check, in front of the guard
