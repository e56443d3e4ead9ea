"""`GET /v1/model/info` for portal keys. Cline calls it to price a model by
the name the user typed; LiteLLM's own answer lists organization-qualified
model groups (or nothing), so the plugin answers it with the key's public
route names. Installed ahead of LiteLLM's route of the same path."""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from fastapi.routing import APIRoute
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

from gateway.plugin.state import get_state

PATHS = ("/v1/model/info", "/model/info")


def model_entry(name: str, group: str, deployments: list[dict[str, Any]],
                prices: dict[str, tuple[float, float]]) -> dict[str, Any]:
    import litellm

    first = next((d for d in deployments if d["model_name"] == group), None)
    provider_model = first["litellm_params"]["model"].split("/", 1)[-1] if first else ""
    known = litellm.model_cost.get(provider_model, {})
    inp, out = prices.get(group, (0.0, 0.0))
    return {
        "model_name": name,
        "litellm_params": {"model": name},
        "model_info": {
            "id": group, "mode": known.get("mode", "chat"), "input_cost_per_token": inp,
            "output_cost_per_token": out, "max_tokens": known.get("max_tokens"),
            "max_input_tokens": known.get("max_input_tokens"), "max_output_tokens": known.get("max_output_tokens"),
            "supports_prompt_caching": bool(known.get("supports_prompt_caching", False)),
            "supports_function_calling": bool(known.get("supports_function_calling", False)),
            "supports_vision": bool(known.get("supports_vision", False)),
        },
    }


async def model_info(auth: UserAPIKeyAuth = Depends(user_api_key_auth)) -> dict[str, Any]:  # noqa: B008
    st = get_state()
    deployments = st.models.get("model_list", [])
    if auth.user_role == LitellmUserRoles.PROXY_ADMIN:
        aliases = {d["model_name"]: d["model_name"] for d in deployments}
    else:
        aliases = dict(auth.aliases or {})
    return {"data": [model_entry(name, group, deployments, st.prices) for name, group in sorted(aliases.items())]}


def install() -> None:
    from litellm.proxy.proxy_server import app

    if any(getattr(r, "endpoint", None) is model_info for r in app.router.routes):
        return
    for path in PATHS:
        app.router.routes.insert(0, APIRoute(path, model_info, methods=["GET"], tags=["portal"]))
