"""Custom auth for the stock LiteLLM proxy (`general_settings.custom_auth:
gateway.plugin.auth.user_api_key_auth`).

For every request it hashes the presented key, finds the key's document
(in-process cache, then Redis), refuses revoked, blocked, expired,
over-budget or rate-limited keys and models the key may not use, each with an
OpenAI-style error that says what happened and what to do; then it reserves
the request's estimated cost against every budget (key, project, team,
organization) and hands LiteLLM the key's limits, its model aliases (public
route name -> the organization's own model group) and the project's Langfuse
target.

The body it reads was checked by the guard (`guard`, `requests`) before
LiteLLM parsed it. A fault of the gateway's own state store (any Redis error)
answers 503 with Retry-After, and a reservation made for a request that is
then refused is given back at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import math
import os
import secrets
import time
import uuid
from typing import Any

import redis
from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from gateway.plugin import STARTUP_HOOK, contract, guard, metrics, requests
from gateway.plugin.state import GatewayState, get_state

log = logging.getLogger("portal.gateway")

LLM_ROUTES = frozenset(requests.ROUTES)
INFO_ROUTES = guard.INFO_ROUTES
SCOPES = ("key", "project", "team", "org")
HOLD_TTL_MS = int(os.environ.get("PORTAL_GATEWAY_HOLD_TTL", "900")) * 1000
DEFAULT_COMPLETION_TOKENS = int(os.environ.get("PORTAL_GATEWAY_COMPLETION_ESTIMATE", "256"))
PORTAL_URL = os.environ.get("PORTAL_PUBLIC_URL", "the portal")


def fail(status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None) -> ProxyException:
    metrics.refused(status, code)  # every refusal of custom auth is made here, once, and raised
    return ProxyException(message=message, type=kind, param=None, code=status, headers=headers, openai_code=code)


def unauthorized(message: str, code: str = "invalid_api_key") -> ProxyException:
    return fail(401, message, "authentication_error", code)


def when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def allowed_routes(key: dict[str, Any], org: dict[str, Any]) -> dict[str, str]:
    """Public route name -> model group, for the routes this key may call."""
    out = {}
    for name, route in org.get("routes", {}).items():
        if not route["active"]:
            continue
        if route["teams"] is not None and key["team"] not in route["teams"]:
            continue
        if key["routes"] is not None and name not in key["routes"]:
            continue
        out[name] = route["group"]
    return out


async def load(st: GatewayState, sha: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The key's pointer, document and organization document, or an error."""
    pointer = await st.doc(contract.hash_doc(sha))
    if pointer is None:
        if not await st.state_loaded():
            raise fail(503, "The gateway is reloading its state from the portal; retry in a few seconds.",
                       "service_unavailable", "gateway_state_loading", {"Retry-After": "2"})
        raise unauthorized(UNKNOWN_KEY)
    key = await st.doc(contract.key_doc(pointer["key_id"]))
    org = await st.doc(contract.org_doc(key["org"])) if key else None
    if key is None or org is None:
        raise unauthorized(f"Invalid API key. Get a new one in {PORTAL_URL}.")
    return pointer, key, org


def check_status(pointer: dict[str, Any], key: dict[str, Any], now: float) -> None:
    name = key["name"]
    if key["status"] == "revoked":
        raise unauthorized(f"This API key ('{name}') was revoked. Ask an admin of your team for a new key.",
                           "key_revoked")
    if pointer["grace_until"] is not None and now >= pointer["grace_until"]:
        raise unauthorized(f"This API key ('{name}') was rotated and its old secret stopped working at "
                           f"{when(pointer['grace_until'])}. Use the new key that was shown at rotation.",
                           "key_rotated")
    if key["expires_at"] is not None and now >= key["expires_at"]:
        raise unauthorized(f"This API key ('{name}') expired at {when(key['expires_at'])}. "
                           "Ask an admin of your team for a new key or a later expiry.", "key_expired")
    if key["status"] == "blocked":
        raise fail(403, f"This API key ('{name}') is blocked by an admin. Ask an admin of your team to unblock it.",
                   "permission_error", "key_blocked")


async def read_body(request: Request) -> tuple[dict[str, Any], int]:
    """The JSON body and its size in bytes: the body the guard checked and
    handed on. LiteLLM parsed it before calling custom auth and keeps it on
    the request: use that, since a coding agent's prompts run to hundreds of
    kilobytes. A body that is not what the guard passes is refused here too."""
    raw = await request.body()
    cached = request.scope.get("parsed_body")
    if isinstance(cached, tuple) and len(cached) == 2 and isinstance(cached[1], dict):
        return cached[1], len(raw)
    try:
        body = requests.parse(raw, request.headers.get("content-type", ""))
    except requests.Refusal as refusal:
        raise fail(refusal.status, refusal.message, refusal.kind, refusal.code) from None
    return body, len(raw)


def check_model(model: str | None, routes: dict[str, str], org: dict[str, Any]) -> None:
    available = ", ".join(sorted(routes)) or "none"
    if model is None:
        raise fail(400, f"Say which model to use ('model'). This key may use: {available}.",
                   "invalid_request_error", "model_required")
    if model in routes:
        return
    if model in org.get("routes", {}):
        raise fail(403, f"This key may not use the model '{model}'. Models it may use: {available}. "
                        "Ask an admin of your team to allow it.", "permission_error", "model_not_allowed")
    raise fail(404, f"The model '{model}' does not exist. Models this key may use: {available}.",
               "invalid_request_error", "model_not_found")


async def scope_budgets(st: GatewayState, key: dict[str, Any], org: dict[str, Any]) -> list[dict[str, Any]]:
    team = await st.doc(contract.team_doc(key["team"])) or {}
    project = await st.doc(contract.project_doc(key["project"])) or {}
    docs = {"key": key, "project": project, "team": team, "org": org}
    ids = {"key": key["id"], "project": key["project"], "team": key["team"], "org": key["org"]}
    return [{"scope": s, "id": ids[s], "budget": docs[s].get("budget") or {"max": None, "soft": None,
                                                                           "period": "none"}}
            for s in SCOPES]


async def reserve(st: GatewayState, body: dict[str, Any], size: int, key: dict[str, Any], org: dict[str, Any],
                  group: str, request_id: str) -> list[dict[str, Any]]:
    """Admit the request against rate limits and every budget, holding its
    estimated cost until the callbacks settle the real one."""
    scopes = await scope_budgets(st, key, org)
    now = dt.datetime.now(dt.UTC)
    keys = [*contract.rate_keys(key["id"], int(now.timestamp() // 60)), contract.estimate_key(group)]
    maxima = []
    for s in scopes:
        s["period_label"] = contract.period_start(s["budget"]["period"], now)
        keys += contract.budget_keys(s["scope"], s["id"], s["period_label"])
        budget_max = s["budget"]["max"]
        maxima.append(-1 if budget_max is None else round(budget_max * contract.NANO))
    if key["rpm"] is None and key["tpm"] is None and all(m < 0 for m in maxima):
        return scopes  # nothing to hold against: spend is still counted when the request settles
    in_price, out_price = st.prices.get(group, (0.0, 0.0))
    prompt_cost = math.ceil(math.ceil(size / 4) * in_price * contract.NANO)  # ~4 bytes per token
    result = await st.run(contract.RESERVE, keys, [
        int(now.timestamp() * 1000), request_id, prompt_cost, out_price * contract.NANO * answers_asked(body),
        completion_cap(body), DEFAULT_COMPLETION_TOKENS,
        HOLD_TTL_MS, key["rpm"] if key["rpm"] is not None else -1, key["tpm"] if key["tpm"] is not None else -1,
        len(scopes), *maxima])
    verdict = result[0]
    if verdict == "budget":
        raise over_budget(scopes[int(result[1])], int(result[2]), now)
    if verdict in ("rpm", "tpm"):
        retry = 60 - now.second
        what = f"{key['rpm']} requests" if verdict == "rpm" else f"{key['tpm']} tokens"
        raise fail(429, f"Rate limit: this key may use {what} per minute. Retry in {retry} s.",
                   "rate_limit_error", "rate_limit_exceeded", {"Retry-After": str(retry)})
    return scopes


CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")  # chat, completions, messages; responses


def completion_cap(body: dict[str, Any]) -> int:
    """The most tokens an answer may have, as the request says (-1: it does not say). With several
    caps (a client sending both max_tokens and max_completion_tokens) the largest: which one a
    provider honours varies, and the estimate must hold whichever it is."""
    caps = [v for v in (body.get(name) for name in CAP_FIELDS)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return max(caps) if caps else -1


def answers_asked(body: dict[str, Any]) -> int:
    """How many answers the provider generates (and bills): `n` choices, or `best_of` candidates."""
    counts = [v for v in (body.get("n"), body.get("best_of")) if isinstance(v, int) and not isinstance(v, bool)]
    return max([1, *counts])


def over_budget(s: dict[str, Any], spent_nano: int, now: dt.datetime) -> ProxyException:
    budget = s["budget"]
    label = {"key": "this key", "project": "its project", "team": "its team", "org": "its organization"}[s["scope"]]
    end = contract.period_end(budget["period"], now)
    resets = f" It resets at {end.strftime('%Y-%m-%d %H:%M UTC')}." if end else ""
    return fail(429, f"Budget exceeded for {label}: ${spent_nano / contract.NANO:.4f} spent of "
                     f"${budget['max']:.4f}{'' if budget['period'] == 'none' else ' ' + budget['period']}.{resets} "
                     "Ask an admin to raise the budget.", "budget_exceeded", "budget_exceeded",
                {"Retry-After": str(int((end - now).total_seconds())) if end else "3600"})


def trace_context(request: Request) -> str:
    """The W3C trace id of this request. When the client sent none, one is
    made and put on the request, so that the project's Langfuse trace and
    the portal's usage record share it."""
    incoming = request.headers.get("traceparent", "")
    parts = incoming.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    trace_id = uuid.uuid4().hex
    header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    request.scope["headers"] = [*request.scope["headers"], (b"traceparent", header.encode())]
    request.__dict__.pop("_headers", None)
    return trace_id


def langfuse_logging(project: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The project's Langfuse target for this request, its secret key unsealed
    in memory. A target this proxy cannot unseal, or with a secret reference in
    it, is not used (the request is served; its trace is not sent), and logged."""
    from gateway.plugin import sealed
    from gateway.plugin.secretrefs import find_secret_reference

    target = (project or {}).get("langfuse")
    if not target:
        return []
    where = find_secret_reference(target)
    if where is not None:
        sealed.log.error("gateway: a project's Langfuse target holds a secret reference in %s; not used", where)
        return []
    secret = target["secret_key"]
    if sealed.is_sealed(secret):
        sealer, _ = sealed.proxy_sealer()
        try:
            secret = sealer.unseal(secret, "langfuse_secret_key")
        except sealed.SealingError as exc:
            sealed.log.error("gateway: a project's Langfuse secret key cannot be unsealed (%s); its traces are "
                             "not sent until the proxy has the portal's GATEWAY_SEALING_KEY", exc)
            return []
    return [{"callback_name": "langfuse_otel", "callback_type": "success_and_failure",
             "callback_vars": {"langfuse_public_key": target["public_key"],
                               "langfuse_secret_key": secret,
                               "langfuse_host": target["host"]}}]


def admin_auth(api_key: str) -> UserAPIKeyAuth | None:
    master = os.environ.get("LITELLM_MASTER_KEY", "")
    if master and hmac.compare_digest(api_key.encode(), master.encode()):
        return UserAPIKeyAuth(user_role=LitellmUserRoles.PROXY_ADMIN, token=hashlib.sha256(master.encode()).hexdigest())
    return None


def started() -> GatewayState:
    """The plugin's state, listening to the portal's events (and replaying
    spooled settlements) from the first request on."""
    st = get_state()
    if st.start(asyncio.get_running_loop()):
        from gateway.plugin.callbacks import portal_callbacks

        portal_callbacks.resume()
    return st


NO_KEY = "No API key. Send 'Authorization: Bearer sk-...' with a key from the portal."
UNKNOWN_KEY = ("Invalid API key. Check the key in your client (it starts with 'sk-'), or get a new one in "
               f"{PORTAL_URL}.")


async def precheck(presented: list[str]) -> tuple[int, str, str] | None:
    """Before the guard reads an LLM request's body (up to many MiB, parsed on
    the event loop), it asks whether any key the request presents is one the
    portal issued: a client without one gets its 401 at once, so it cannot make
    the proxy parse bodies for it. None: go on (custom auth decides the rest,
    including 503 when Redis cannot answer). Else (status, message, code)."""
    if not presented:
        return 401, NO_KEY, "invalid_api_key"
    st = started()
    try:
        for key in presented:
            if await st.doc(contract.hash_doc(hashlib.sha256(key.encode()).hexdigest())) is not None:
                return None
        if not await st.state_loaded():
            return None
    except Exception:  # noqa: BLE001 - whatever fails here, custom auth decides (and answers 503 for Redis)
        return None
    return 401, UNKNOWN_KEY, "invalid_api_key"


NOT_INSTALLED = ("The gateway is misconfigured (its guard is not installed); no request is served. Tell an admin "
                 "of the platform.")


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if not guard.installed():
        # The proxy was started without the plugin's startup hook: refuse rather than serve unguarded.
        log.error("gateway: the guard is not installed; start the proxy with LITELLM_WORKER_STARTUP_HOOKS=%s",
                  STARTUP_HOOK)
        raise fail(503, NOT_INSTALLED, "service_unavailable", "gateway_not_installed")
    st = started()
    try:
        return await _authenticate(st, request, api_key)
    except (redis.RedisError, OSError) as exc:
        # Unreachable, out of memory, read-only, a script error...: the gateway's fault, never the caller's.
        log.warning("gateway: state store error in auth: %s", type(exc).__name__)
        raise fail(503, "The gateway cannot use its state store right now; retry in a few seconds.",
                   "service_unavailable", "gateway_unavailable", {"Retry-After": "2"}) from None
    except ProxyException:
        raise
    except Exception:
        # A document the plugin cannot read (corrupt, or of a newer layout): the gateway's fault too.
        log.exception("gateway: unexpected error in auth")
        raise fail(503, "The gateway could not check this request; retry in a few seconds. If it goes on, tell "
                        "an admin of the platform.", "service_unavailable", "gateway_error",
                   {"Retry-After": "5"}) from None


async def _authenticate(st: GatewayState, request: Request, api_key: str) -> UserAPIKeyAuth:
    if st.models_version < 0:
        await st.reload_models()
    path = request.url.path.rstrip("/")
    admin = admin_auth(api_key or "")
    if admin is not None:
        if path in LLM_ROUTES or not guard.master_may_use(path):
            raise fail(403, guard.master_refused().message, "permission_error", "master_key_not_allowed")
        return admin
    if not api_key:
        raise unauthorized(NO_KEY)
    sha = hashlib.sha256(api_key.encode()).hexdigest()
    pointer, key, org = await load(st, sha)
    now = time.time()
    check_status(pointer, key, now)
    routes = allowed_routes(key, org)
    portal: dict[str, Any] = {"key_id": key["id"], "key_hash": sha, "org": key["org"], "team": key["team"],
                              "project": key["project"], "owner": key["owner"]}
    metadata: dict[str, Any] = {"portal": portal}
    if path in LLM_ROUTES:
        body, size = await read_body(request)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        check_model(model, routes, org)
        assert model is not None
        request_id = uuid.uuid4().hex
        scopes = await reserve(st, body, size, key, org, routes[model], request_id)
        portal.update(reservation=request_id, route=model, group=routes[model], started=now,
                      scopes=[[s["scope"], s["id"], s["period_label"], s["budget"]["soft"], s["budget"]["period"]]
                              for s in scopes])
        try:
            project = await st.doc(contract.project_doc(key["project"]))
            portal["trace_id"] = trace_context(request)
            if logging_targets := langfuse_logging(project):
                metadata["logging"] = logging_targets
        except BaseException:
            from gateway.plugin.callbacks import release

            await asyncio.shield(release(portal))
            raise
        request.scope[guard.RESERVATION] = portal  # the guard hands it to the watch when the request ends
    elif path not in INFO_ROUTES:
        raise fail(403, "Portal keys can call chat/completions, completions, embeddings, responses, messages, "
                        "models and model/info.", "permission_error", "route_not_allowed")
    return UserAPIKeyAuth(
        token=sha, key_name=key.get("prefix"), key_alias=key["name"], user_id=key["owner"] or f"key-{key['id']}",
        team_id=str(key["team"]), org_id=str(key["org"]), models=sorted(routes), aliases=routes,
        rpm_limit=key["rpm"], tpm_limit=key["tpm"], metadata=metadata,
        user_role=LitellmUserRoles.INTERNAL_USER,
    )
