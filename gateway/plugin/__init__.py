"""The portal's plugin for the stock LiteLLM proxy (managed mode).

`auth.user_api_key_auth` is LiteLLM's custom auth, `callbacks.portal_callbacks`
its callback; both read what the portal pushed into Redis (`contract`). This
package imports only LiteLLM, the Redis client and the standard library."""
