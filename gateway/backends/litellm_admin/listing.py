"""Reading back what LiteLLM holds for the portal (its teams, models and
keys carry the portal's prefixes and metadata), page by page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.backends.litellm_admin.client import JSON, AdminClient
from gateway.backends.litellm_admin.payloads import DEPLOYMENT_PREFIX, TEAM_PREFIX

KEY_PAGE_SIZE = 100  # the most /key/list serves per page


def listed_teams(client: AdminClient) -> dict[str, JSON]:
    return {t["team_id"]: t for t in client.get("/team/list") or []
            if str(t.get("team_id", "")).startswith(TEAM_PREFIX)}


def listed_deployments(client: AdminClient) -> dict[str, JSON]:
    rows = client.get("/model/info").get("data") or []
    return {row["model_info"]["id"]: row for row in rows
            if str((row.get("model_info") or {}).get("id", "")).startswith(DEPLOYMENT_PREFIX)}


def iter_keys(client: AdminClient, **params: Any) -> Iterator[JSON]:
    """LiteLLM's keys (full rows, with `token`, the hash), page by page."""
    page, pages = 1, 1
    while page <= pages:
        body = client.get("/key/list", return_full_object="true", size=KEY_PAGE_SIZE, page=page, **params)
        yield from (k for k in body.get("keys") or [] if isinstance(k, dict))
        page, pages = page + 1, int(body.get("total_pages") or 0)


def portal_keys(client: AdminClient) -> dict[str, JSON]:
    """LiteLLM's keys that the portal made, by token."""
    return {k["token"]: k for k in iter_keys(client) if (k.get("metadata") or {}).get("portal_key_id")}


def tokens_of(client: AdminClient, key_pk: int) -> list[str]:
    rows = iter_keys(client, key_alias=f"/key-{key_pk}.", substring_matching="true")
    return [r["token"] for r in rows if (r.get("metadata") or {}).get("portal_key_id") == key_pk]
