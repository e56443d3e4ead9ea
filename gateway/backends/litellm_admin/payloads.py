"""What LiteLLM should hold for the portal: its ids for portal objects, and
the bodies of `/team/*`, `/key/*` and `/model/*`, computed from the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from gateway import documents
from gateway.models import KeyGraceHash, KeyStatus, ModelRoute, RouteDeployment, VirtualKey
from portal.models import BudgetFields, Team

JSON = dict[str, Any]

BUDGET_DURATION = {"daily": "1d", "weekly": "7d", "monthly": "30d"}  # LiteLLM snaps 7d to Monday, 30d to the 1st
# LiteLLM reads an empty `models` list as "every model on the proxy"; a name
# no route can have (route names start with a letter or digit) means "none".
NO_MODELS = "__portal_no_models__"
TEAM_PREFIX, DEPLOYMENT_PREFIX = "portal-team-", "portal-dep-"


def team_id(pk: int) -> str:
    return f"{TEAM_PREFIX}{pk}"


def deployment_id(pk: int) -> str:
    return f"{DEPLOYMENT_PREFIX}{pk}"


def key_alias(key: VirtualKey, sha: str) -> str:
    """Per secret, since LiteLLM wants aliases unique and a key has one
    LiteLLM key per secret during a rotation's grace period."""
    return f"{key.organization.slug}/key-{key.pk}.{sha[:8]}"


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def budget(obj: BudgetFields, *, soft_below_max: bool = False) -> JSON:
    soft = obj.soft_budget
    if soft_below_max and soft is not None and obj.max_budget is not None and soft >= obj.max_budget:
        soft = None  # LiteLLM's teams refuse soft >= max; at max the hard limit acts anyway
    return {"max_budget": _money(obj.max_budget), "soft_budget": _money(soft),
            "budget_duration": BUDGET_DURATION.get(obj.budget_period)}


def _groups(routes: Iterable[ModelRoute]) -> list[str]:
    return sorted(r.model_group for r in routes if r.is_active) or [NO_MODELS]


def team_routes(team: Team) -> list[ModelRoute]:
    from gateway.services.keys import usable_routes

    return list(usable_routes(team.pk, team.organization_id).select_related("organization"))


def team_payload(team: Team) -> JSON:
    """Body of `/team/new` and `/team/update`."""
    return {"team_id": team_id(team.pk), "team_alias": f"{team.organization.slug}/{team.name}",
            "models": _groups(team_routes(team)), **budget(team, soft_below_max=True),
            "metadata": {"portal_team_id": team.pk, "portal_org_id": team.organization_id}}


def key_models(key: VirtualKey) -> list[str]:
    """The key's own routes if it names some, else its team's; never more than its team's."""
    usable = team_routes(key.team)
    chosen = {r.pk for r in key.allowed_routes.all()}
    return _groups([r for r in usable if r.pk in chosen] if chosen else usable)


def _duration(expires_at: dt.datetime | None) -> str | None:
    """LiteLLM takes a key's expiry only as a duration from now; None: never."""
    if expires_at is None:
        return None
    return f"{max(0, int((expires_at - timezone.now()).total_seconds()))}s"


def key_settings(key: VirtualKey, sha: str) -> JSON:
    """What `/key/generate` and `/key/update` set, for one secret of the key.
    The key's free-form metadata stays in the portal: LiteLLM reads some
    metadata fields (callbacks, guardrails) as configuration."""
    return {
        "key_alias": key_alias(key, sha), "team_id": team_id(key.team_id), "models": key_models(key),
        **budget(key), "rpm_limit": key.rpm_limit, "tpm_limit": key.tpm_limit, "duration": _duration(key.expires_at),
        "metadata": {"portal_key_id": key.pk, "portal_org_id": key.organization_id, "portal_team_id": key.team_id,
                     "portal_project_id": key.project_id, "portal_key_name": key.name,
                     "portal_owner": key.owner.email if key.owner else None},
    }


def _fingerprint(entry: JSON) -> str:
    """Keyed, so that reading model_info back never confirms a guessed secret."""
    canonical = json.dumps(entry, sort_keys=True, default=str).encode()
    return hmac.new(settings.SECRET_KEY.encode(), canonical, hashlib.sha256).hexdigest()[:32]


def deployment_payload(route: ModelRoute, dep: RouteDeployment) -> JSON:
    """Body of `/model/new`: the entry managed mode writes, under a stable id,
    with the parameter names (to know when an update must drop one) and a fingerprint."""
    entry = documents._deployment_entry(route, dep, route.model_group, seal_secrets=False)
    entry["model_info"]["id"] = deployment_id(dep.pk)
    entry["model_info"]["portal_params"] = sorted(entry["litellm_params"])
    entry["model_info"]["portal_fingerprint"] = _fingerprint(entry)
    return entry


def deployment_payloads(org_id: int | None = None) -> dict[str, JSON]:
    """Every deployment of every active route (of one organization), by LiteLLM id."""
    routes = (ModelRoute.objects.filter(is_active=True).select_related("organization")
              .prefetch_related(Prefetch("deployments", RouteDeployment.objects.select_related("credential"))))
    if org_id is not None:
        routes = routes.filter(organization_id=org_id)
    payloads = {deployment_id(d.pk): deployment_payload(r, d) for r in routes for d in r.deployments.all()}
    # A deployment documents.py disabled (a secret reference in an old row) is not pushed: LiteLLM
    # would resolve the reference, and has no provider for the placeholder.
    return {k: p for k, p in payloads.items() if not p["model_info"].get("unavailable")}


def key_query() -> QuerySet[VirtualKey]:
    return VirtualKey.objects.select_related("organization", "team", "owner").prefetch_related("allowed_routes")


def secrets_of(key: VirtualKey, now: dt.datetime) -> tuple[list[str], list[str]]:
    """(hashes that must work, rotated-out hashes whose grace has ended)."""
    graces = list(KeyGraceHash.objects.filter(key=key).values_list("key_hash", "expires_at"))
    live = [key.key_hash] + [sha for sha, end in graces if end > now]
    return live, [sha for sha, end in graces if end <= now]


def live_hashes() -> set[str]:
    usable = VirtualKey.objects.exclude(status=KeyStatus.REVOKED)
    graces = KeyGraceHash.objects.filter(key__in=usable, expires_at__gt=timezone.now())
    return set(usable.values_list("key_hash", flat=True)) | set(graces.values_list("key_hash", flat=True))
