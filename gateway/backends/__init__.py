"""The gateway backends: what the portal pushes its keys and routes to.

- `base`: the `Backend` protocol, `GatewayError`, and the registry that reads
  `GATEWAY_MODE` (`backend()`).
- `managed`: the default; Redis documents that the portal's LiteLLM plugin reads.
- `litellm_admin`: LiteLLM's own management API, for a LiteLLM with its own database."""

from gateway.backends.base import Backend, GatewayError, backend, register

__all__ = ["Backend", "GatewayError", "backend", "register"]
