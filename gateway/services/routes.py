"""Writes to model routes, their deployments and fallbacks."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from gateway import changes, providers
from gateway.models import KeyStatus, ModelRoute, RouteDeployment, RouteFallback
from portal import audit, secretrefs
from portal.access import Actor
from portal.models import OrgRole

ROUTE_FIELDS = ("name", "description", "is_active", "num_retries", "timeout_seconds",
                "input_cost_per_million", "output_cost_per_million")


def route_state(route: ModelRoute) -> dict[str, Any]:
    deployments = [
        {"credential": d.credential_id, "model": d.model, "litellm_params": d.litellm_params,
         "weight": d.weight, "priority": d.priority}
        for d in route.deployments.all()
    ]
    return audit.snapshot(
        route, ROUTE_FIELDS,
        deployments=deployments,
        fallbacks=[link.fallback.name for link in route.fallback_links.select_related("fallback")],
        allowed_teams=sorted(route.allowed_teams.values_list("id", flat=True)),
    )


def _set_deployments(route: ModelRoute, deployments: list[dict[str, Any]]) -> None:
    if not deployments:
        raise ValidationError({"deployments": "A route needs at least one deployment."})
    route.deployments.all().delete()
    for position, d in enumerate(deployments):
        params = providers.validate_deployment_params(d.get("litellm_params") or {})
        if not isinstance(d.get("model"), str) or not d["model"]:
            raise ValidationError({"deployments": [f"[{position}] model: This field is required."]})
        providers.validate_deployment_model(d["model"], position)
        credential = d.get("credential")
        if credential is None and "mock_response" not in params:
            raise ValidationError({"deployments": [f"[{position}] Needs a credential (or a mock_response)."]})
        if credential is not None and credential.organization_id != route.organization_id:
            raise ValidationError({"deployments": [f"[{position}] Unknown credential."]})
        dep = RouteDeployment(route=route, position=position, credential=credential, model=d["model"],
                              litellm_params=params, weight=d.get("weight") or 1, priority=d.get("priority"))
        dep.full_clean()
        dep.save()


def _set_fallbacks(route: ModelRoute, fallbacks: list[ModelRoute]) -> None:
    route.fallback_links.all().delete()
    for position, fb in enumerate(fallbacks):
        if fb.pk == route.pk:
            raise ValidationError({"fallbacks": "A route cannot fall back to itself."})
        if fb.organization_id != route.organization_id:
            raise ValidationError({"fallbacks": "Unknown route."})
        RouteFallback.objects.get_or_create(route=route, fallback=fb, defaults={"position": position})


def _apply(route: ModelRoute, data: dict[str, Any]) -> None:
    for name in ROUTE_FIELDS:
        if name in data:
            setattr(route, name, data[name])
    route.full_clean(validate_unique=False, validate_constraints=False)
    secretrefs.refuse_secret_references(route.name, "name")  # the model group LiteLLM sees
    if ModelRoute.objects.filter(organization=route.organization, name=route.name).exclude(pk=route.pk).exists():
        raise ValidationError({"name": "A route with this name already exists."})
    route.save()
    if "deployments" in data:
        _set_deployments(route, data["deployments"])
    if "fallbacks" in data:
        _set_fallbacks(route, data["fallbacks"])
    if "allowed_teams" in data:
        if any(t.organization_id != route.organization_id for t in data["allowed_teams"]):
            raise ValidationError({"allowed_teams": "Unknown team."})
        route.allowed_teams.set(data["allowed_teams"])


@transaction.atomic
def route_create(*, actor: Actor, data: dict[str, Any]) -> ModelRoute:
    actor.require(OrgRole.ADMIN)
    if "deployments" not in data:
        raise ValidationError({"deployments": "A route needs at least one deployment."})
    route = ModelRoute(organization=actor.organization)
    _apply(route, data)
    audit.record(actor, "route.create", route, after=route_state(route))
    changes.routes_changed(actor.organization.pk)
    return route


@transaction.atomic
def route_update(*, actor: Actor, route: ModelRoute, data: dict[str, Any]) -> ModelRoute:
    actor.require(OrgRole.ADMIN)
    route = ModelRoute.objects.select_for_update().get(pk=route.pk)
    before = route_state(route)
    _apply(route, data)
    audit.record(actor, "route.update", route, before=before, after=route_state(route))
    changes.routes_changed(actor.organization.pk)
    return route


@transaction.atomic
def route_delete(*, actor: Actor, route: ModelRoute) -> None:
    actor.require(OrgRole.ADMIN)
    keys = route.keys.exclude(status=KeyStatus.REVOKED)
    if keys.exists():
        # Removing the route from a key's list could leave the list empty,
        # which means "every route": refuse rather than widen access.
        raise ValidationError({"route": f"{keys.count()} key(s) may use this route by name; "
                                        "remove it from them first."})
    audit.record(actor, "route.delete", route, before=route_state(route))
    route.delete()
    changes.routes_changed(actor.organization.pk)
