"""What differs between the portal and LiteLLM (`gateway_sync --check`), one line each."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from gateway.backends.litellm_admin.client import JSON, AdminClient
from gateway.backends.litellm_admin.listing import listed_deployments, listed_teams, portal_keys
from gateway.backends.litellm_admin.payloads import (
    deployment_payloads,
    key_query,
    key_settings,
    secrets_of,
    team_payload,
)
from gateway.models import KeyStatus
from portal.models import Team

TEAM_FIELDS = ("team_alias", "models", "max_budget", "soft_budget", "budget_duration")
KEY_FIELDS = ("key_alias", "team_id", "models", "max_budget", "budget_duration", "rpm_limit", "tpm_limit", "blocked")


def drift(client: AdminClient) -> list[str]:
    return team_drift(client) + deployment_drift(client) + key_drift(client)


def team_drift(client: AdminClient) -> list[str]:
    have, problems = listed_teams(client), []
    for team in Team.objects.select_related("organization"):
        want = team_payload(team)
        problems += _compare(f"team {want['team_id']}", want, have.pop(want["team_id"], None), TEAM_FIELDS)
    return problems + [f"orphan  team {tid}" for tid in sorted(have)]


def deployment_drift(client: AdminClient) -> list[str]:
    have, problems = listed_deployments(client), []
    for dep_id, want in deployment_payloads().items():
        row = have.pop(dep_id, None)
        if row is None:
            problems.append(f"missing model {dep_id}")
        elif (row["model_name"], row["model_info"].get("portal_fingerprint")) != (
                want["model_name"], want["model_info"]["portal_fingerprint"]):
            problems.append(f"stale   model {dep_id}")
    return problems + [f"orphan  model {dep_id}" for dep_id in sorted(have)]


def key_drift(client: AdminClient) -> list[str]:
    have = portal_keys(client)
    problems, now = [], timezone.now()
    for key in key_query().iterator(500):
        live, expired = secrets_of(key, now)
        revoked = key.status == KeyStatus.REVOKED
        for sha in [] if revoked else live:
            want = {**key_settings(key, sha), "blocked": key.status == KeyStatus.BLOCKED}
            row = have.pop(sha, None)
            row = row and {**row, "blocked": bool(row.get("blocked"))}
            problems += _compare(f"key {key.pk} ({key.key_prefix}...)", want, row, KEY_FIELDS)
        for sha in live + expired if revoked else expired:
            if have.pop(sha, None) is not None:
                problems.append(f"stale   key {key.pk}: a revoked or rotated-out secret still works")
    return problems + [f"orphan  key {row.get('key_alias') or '?'}" for row in have.values()]


def _compare(name: str, want: JSON, have: JSON | None, fields: tuple[str, ...]) -> list[str]:
    if have is None:
        return [f"missing {name}"]
    differ = [f for f in fields if _norm(want.get(f)) != _norm(have.get(f))]
    return [f"stale   {name} ({', '.join(differ)})"] if differ else []


def _norm(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
