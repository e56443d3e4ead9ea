"""The gateway documents computed from the database: what the plugin needs
to authorize, route, limit and budget a request, and LiteLLM's model list."""

from __future__ import annotations

import logging
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from gateway.models import KeyGraceHash, ModelRoute, RouteDeployment, VirtualKey
from gateway.plugin import sealed
from gateway.plugin.secretrefs import find_secret_reference
from gateway.providers import litellm_params
from portal import crypto, outbound
from portal.models import BudgetFields, Organization, Project, Team

MILLION = Decimal(1_000_000)
log = logging.getLogger("portal.gateway")


@lru_cache(maxsize=4)
def _sealer(keys: tuple[str, ...]) -> sealed.Sealer:
    return sealed.Sealer(keys)


def seal(value: str, field: str) -> str:
    """A secret as the proxies receive it: sealed with GATEWAY_SEALING_KEY."""
    return _sealer(tuple(settings.GATEWAY_SEALING_KEYS)).seal(value, field)


def refused_address(url: str) -> bool:
    """Whether the outbound policy refuses a URL the proxies would call. The
    portal checks it when a tenant saves it; this check again at every push
    covers rows saved before the policy, or under a wider allowance, and a
    name that has since moved inside (the proxies call it without the
    portal's pinned transport)."""
    try:
        outbound.check_url(url)
    except outbound.OutboundRefused:
        return True
    return False


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def budget(obj: BudgetFields) -> dict[str, Any]:
    return {"max": _money(obj.max_budget), "soft": _money(obj.soft_budget), "period": obj.budget_period}


def key_document(key: VirtualKey) -> dict[str, Any]:
    routes = sorted(r.name for r in key.allowed_routes.all())
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.key_prefix,
        "org": key.organization_id,
        "team": key.team_id,
        "project": key.project_id,
        "owner": key.owner.email if key.owner else None,
        "status": key.status,
        "expires_at": key.expires_at.timestamp() if key.expires_at else None,
        "routes": routes or None,
        "rpm": key.rpm_limit,
        "tpm": key.tpm_limit,
        "budget": budget(key),
    }


def hash_documents(key: VirtualKey) -> list[tuple[str, float | None]]:
    """(sha256, grace_until) for the key's current secret and rotated-out ones."""
    out: list[tuple[str, float | None]] = [(key.key_hash, None)]
    out += [(g.key_hash, g.expires_at.timestamp()) for g in KeyGraceHash.objects.filter(key=key)]
    return out


def org_document(org: Organization) -> dict[str, Any]:
    routes = ModelRoute.objects.filter(organization=org).prefetch_related("allowed_teams")
    return {
        "slug": org.slug,
        "budget": budget(org),
        "routes": {
            r.name: {"group": f"{org.slug}/{r.name}", "active": r.is_active,
                     "teams": sorted(t.pk for t in r.allowed_teams.all()) or None}
            for r in routes
        },
    }


def team_document(team: Team) -> dict[str, Any]:
    return {"org": team.organization_id, "budget": budget(team)}


def project_document(project: Project) -> dict[str, Any]:
    return {"org": project.organization_id, "team": project.team_id, "budget": budget(project),
            "langfuse": project_langfuse(project)}


def project_langfuse(project: Project) -> dict[str, str] | None:
    """The project's Langfuse target for LiteLLM's `langfuse_otel` logging."""
    conn = getattr(project, "langfuse_connection", None)
    if conn is None or not conn.enabled:
        return None
    target = {"host": conn.host, "public_key": conn.public_key, "secret_key": conn.secret_key()}
    where = find_secret_reference(target)
    if where is not None:
        log.error("gateway: the Langfuse connection of project %s holds a secret reference in %s; "
                  "its traces are not sent", project.pk, where)
        return None
    if refused_address(target["host"]):
        log.error("gateway: the Langfuse host of project %s is on a network the portal does not connect to; "
                  "its traces are not sent", project.pk)
        return None
    return {**target, "secret_key": seal(target["secret_key"], "langfuse_secret_key")}


def _deployment_entry(route: ModelRoute, dep: RouteDeployment, group: str, *,
                      seal_secrets: bool = True) -> dict[str, Any]:
    """The deployment's entry in LiteLLM's model list, its secrets sealed (not
    for the litellm-admin mode, whose LiteLLM keeps them in its own database). A
    deployment with a secret reference in it (validation refuses them, but an old
    or hand-edited row may hold one) is replaced by one that answers a clear
    error, and logged without the value."""
    entry = _plain_entry(route, dep, group)
    where = find_secret_reference(entry)
    if where is not None:
        log.error("gateway: deployment %s of route %s holds a secret reference in %s; it is disabled",
                  dep.pk, group, where)
        return sealed.unavailable_entry(group, f"dep-{dep.pk}", "reference")
    base = entry["litellm_params"].get("api_base")
    if isinstance(base, str) and refused_address(base):
        log.error("gateway: deployment %s of route %s has an api_base on a network the portal does not connect "
                  "to; it is disabled", dep.pk, group)
        return sealed.unavailable_entry(group, f"dep-{dep.pk}", "outbound")
    if seal_secrets:
        params = entry["litellm_params"]
        for field in sealed.SECRET_PARAMS & params.keys():
            if isinstance(params[field], str) and params[field] not in sealed.PLACEHOLDERS:
                params[field] = seal(params[field], field)
    return entry


def _plain_entry(route: ModelRoute, dep: RouteDeployment, group: str) -> dict[str, Any]:
    cred = dep.credential
    params = litellm_params(cred.provider if cred else None, dep.model, cred.settings if cred else {},
                            crypto.decrypt_json(cred.secrets_encrypted) if cred else {}, dep.litellm_params)
    params["weight"] = dep.weight
    if dep.priority is not None:
        params["order"] = dep.priority + 1  # LiteLLM's order starts at 1
    if route.timeout_seconds:
        params.setdefault("timeout", route.timeout_seconds)
    if route.input_cost_per_million is not None:
        params["input_cost_per_token"] = float(route.input_cost_per_million / MILLION)
    if route.output_cost_per_million is not None:
        params["output_cost_per_token"] = float(route.output_cost_per_million / MILLION)
    if cred is None:
        params.setdefault("api_key", "mock")
    return {
        "model_name": group,
        "litellm_params": params,
        "model_info": {"id": f"dep-{dep.pk}", "route": route.name, "org": route.organization_id,
                       "deployment": dep.pk, "provider": cred.provider if cred else "mock"},
    }


def models_document() -> dict[str, Any]:
    """LiteLLM's model list for every active route of every organization,
    each under its organization-qualified model group."""
    routes = (ModelRoute.objects.filter(is_active=True).select_related("organization")
              .prefetch_related(Prefetch("deployments", RouteDeployment.objects.select_related("credential")),
                                "fallback_links__fallback"))
    model_list: list[dict[str, Any]] = []
    fallbacks: list[dict[str, list[str]]] = []
    retries: dict[str, int] = {}
    for route in routes:
        group = f"{route.organization.slug}/{route.name}"
        model_list += [_deployment_entry(route, dep, group) for dep in route.deployments.all()]
        chain = [f"{route.organization.slug}/{link.fallback.name}" for link in route.fallback_links.all()
                 if link.fallback.is_active]
        if chain:
            fallbacks.append({group: chain})
        retries[group] = route.num_retries
    return {"model_list": model_list, "fallbacks": fallbacks, "retries": retries}
