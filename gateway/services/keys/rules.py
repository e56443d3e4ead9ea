"""The rules every key write follows: who may write a key, which routes its
team may use, the checks of its fields, who may raise its limits, and what
the audit log records of it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone

from gateway.models import ModelRoute, VirtualKey
from portal import audit
from portal.access import Actor
from portal.models import Membership, OrgRole

KEY_FIELDS = ("name", "team", "project", "owner", "status", "max_budget", "soft_budget", "budget_period",
              "rpm_limit", "tpm_limit", "expires_at", "key_prefix")
EDITABLE = ("name", "owner", "max_budget", "soft_budget", "budget_period", "rpm_limit", "tpm_limit",
            "expires_at", "metadata")
MAX_METADATA_BYTES = 4096


def key_state(key: VirtualKey) -> dict[str, Any]:
    return audit.snapshot(key, KEY_FIELDS, allowed_routes=sorted(r.name for r in key.allowed_routes.all()))


def check_may_write(actor: Actor, *, team_id: int, owner_id: int | None, admin_only: bool = False) -> None:
    """Team managers write any key of the team; members only their own keys
    in their own teams, and never block or unblock."""
    if actor.manages_team(team_id):
        return
    own = actor.user is not None and owner_id == actor.user.pk
    if not admin_only and actor.at_least(OrgRole.MEMBER) and actor.in_team(team_id) and own:
        return
    raise PermissionDenied("This key can be changed by its owner or by an admin of its team.")


def usable_routes(team_id: int, organization_id: int) -> QuerySet[ModelRoute]:
    return (ModelRoute.objects.filter(organization_id=organization_id)
            .filter(Q(allowed_teams=None) | Q(allowed_teams=team_id)).distinct().order_by("name"))


def check_key(key: VirtualKey, routes: list[ModelRoute] | None, *, check_expiry: bool) -> None:
    if key.project.team_id != key.team_id:
        raise ValidationError({"project": "The project belongs to another team."})
    if key.owner_id is not None and not Membership.objects.filter(
            organization_id=key.organization_id, user_id=key.owner_id).exists():
        raise ValidationError({"owner": "The owner must be a member of the organization."})
    if key.expires_at is not None and key.expires_at <= timezone.now() and check_expiry:
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if key.max_budget is not None and key.soft_budget is not None and key.soft_budget > key.max_budget:
        raise ValidationError({"soft_budget": "The soft budget cannot be above the max budget."})
    if routes is not None:
        usable = set(usable_routes(key.team_id, key.organization_id).values_list("pk", flat=True))
        refused = sorted(r.name for r in routes if r.pk not in usable)
        if refused:
            raise ValidationError({"allowed_routes": [f"Route '{n}' is not available to this team." for n in refused]})
    if len(repr(key.metadata)) > MAX_METADATA_BYTES:
        raise ValidationError({"metadata": f"At most {MAX_METADATA_BYTES} bytes."})


def default_model(key: VirtualKey, requested: list[ModelRoute] | None = None) -> str:
    if requested:
        return requested[0].name
    route = key.allowed_routes.order_by("name").first() or usable_routes(key.team_id, key.organization_id).first()
    return route.name if route else ""


LIMIT_FIELDS = ("max_budget", "soft_budget", "rpm_limit", "tpm_limit", "expires_at")
LIFT = ("Only an admin of the key's team can raise or remove its {field}; you may only lower it "
        "(an empty value means no limit).")


def check_no_lift(actor: Actor, key: VirtualKey, data: dict[str, Any]) -> None:
    """Limits are set by the team's managers: anyone else may only lower the
    limits of their own key (or rename it). No limit (null) is the highest
    limit, so setting one to null raises it; a later expiry, a change of
    budget period and a wider route list are raises too."""
    if actor.manages_team(key.team_id):
        return
    for field in LIMIT_FIELDS:
        if field not in data:
            continue
        old, new = getattr(key, field), data[field]
        if old is not None and (new is None or new > old):
            raise PermissionDenied(LIFT.format(field=field))
    has_budget = key.max_budget is not None or key.soft_budget is not None
    if "budget_period" in data and data["budget_period"] != key.budget_period and has_budget:
        raise PermissionDenied("Only an admin of the key's team can change its budget_period (a change of period "
                               "changes the limit).")
    if "allowed_routes" in data:
        old_routes = {r.pk for r in key.allowed_routes.all()}
        new_routes = {r.pk for r in data["allowed_routes"]}
        if not new_routes and old_routes or old_routes and not new_routes <= old_routes:
            raise PermissionDenied("Only an admin of the key's team can add to its allowed_routes; you may only "
                                   "remove routes (an empty list means every route).")


def locked(key: VirtualKey) -> VirtualKey:
    return VirtualKey.objects.select_for_update().select_related("project").get(pk=key.pk)
