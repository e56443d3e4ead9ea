"""`AdminBackend`: pushes through LiteLLM's management API, idempotently
(stable ids: a push is an upsert; deleting what is gone is done)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.db.models import QuerySet
from django.utils import timezone

from gateway import usage
from gateway.backends.base import register
from gateway.backends.litellm_admin import listing, spend
from gateway.backends.litellm_admin.client import JSON, AdminClient, LiteLLMAdminError, LiteLLMNotFound, shared_client
from gateway.backends.litellm_admin.drift import drift as drift_report
from gateway.backends.litellm_admin.payloads import (
    deployment_payloads,
    key_query,
    key_settings,
    live_hashes,
    secrets_of,
    team_id,
    team_payload,
)
from gateway.models import KeyGraceHash, KeyStatus, ModelRoute, SyncKind, VirtualKey
from portal.models import Team

log = logging.getLogger("gateway.litellm_admin")


@register("litellm-admin")
class AdminBackend:
    """The `Backend` of a LiteLLM with its own database; see the package docstring."""

    name = "litellm-admin"
    runs_plugin_proxy = False  # LiteLLM runs with its own database and no plugin
    ends_graces_itself = False  # a rotated-out secret works in LiteLLM until it is deleted there

    def __init__(self, admin: AdminClient | None = None) -> None:
        self.client = admin or shared_client()

    def push(self, kind: str, object_id: int) -> None:
        handlers: dict[str, Callable[[int], None]] = {
            SyncKind.KEY: self.push_key, SyncKind.ROUTES: self.push_routes, SyncKind.TEAM: self.push_team,
            SyncKind.ORGANIZATION: self.push_organization, SyncKind.PROJECT: self.push_project}
        handlers[kind](object_id)

    def push_team(self, pk: int) -> None:
        team = Team.objects.select_related("organization").filter(pk=pk).first()
        if team is None:
            self._ignore_missing("/team/delete", {"team_ids": [team_id(pk)]})
            return
        payload = team_payload(team)
        try:
            self.client.post("/team/update", payload)
        except LiteLLMNotFound:
            self.client.post("/team/new", payload)

    def ensure_team(self, pk: int) -> None:
        """LiteLLM's master key may create a key for a team that does not
        exist, and such a key is then held to no team's model list."""
        try:
            self.client.get("/team/info", team_id=team_id(pk), key_limit=1)  # it lists the team's keys too
        except LiteLLMNotFound:
            self.push_team(pk)

    def push_key(self, pk: int) -> None:
        key = key_query().filter(pk=pk).first()
        if key is None:  # deleted with its project after revocation
            self._delete_tokens(listing.tokens_of(self.client, pk))
            return
        live, expired = secrets_of(key, timezone.now())
        if key.status == KeyStatus.REVOKED:
            self._delete_tokens(live + expired)
            return
        for sha in live:
            try:
                self.client.post("/key/update", {"key": sha, **key_settings(key, sha)})
            except LiteLLMNotFound as exc:
                if sha == key.key_hash:
                    raise LiteLLMNotFound(f"key {key.pk} is not in LiteLLM; rotate it to register a new secret",
                                          permanent=True, status=404) from exc
                continue
            self.client.post("/key/block" if key.status == KeyStatus.BLOCKED else "/key/unblock", {"key": sha})
        self._delete_tokens(expired)

    def push_routes(self, org_id: int, *, listed: dict[str, JSON] | None = None, force: bool = False) -> None:
        """The organization's deployments, then its teams' and keys' model lists."""
        have = listed if listed is not None else listing.listed_deployments(self.client)
        want = deployment_payloads(org_id)
        for dep_id, payload in want.items():
            self._upsert_deployment(payload, have.get(dep_id), force=force)
        for dep_id, row in have.items():
            if dep_id not in want and row["model_info"].get("org") == org_id:
                self.client.post("/model/delete", {"id": dep_id})
        for team_pk in Team.objects.filter(organization_id=org_id).values_list("pk", flat=True):
            self.push_team(team_pk)
        self._push_keys(VirtualKey.objects.filter(organization_id=org_id).exclude(status=KeyStatus.REVOKED))

    def _push_keys(self, keys: QuerySet[VirtualKey]) -> None:
        """Keys whose LiteLLM settings follow from another object. One key
        LiteLLM never saw (issued before this mode) must not block the others."""
        for key_pk in keys.values_list("pk", flat=True):
            try:
                self.push_key(key_pk)
            except LiteLLMNotFound as exc:
                log.warning("%s", exc)

    def push_organization(self, org_id: int) -> None:
        """Nothing in LiteLLM mirrors an organization's budget or members."""

    def push_project(self, project_id: int) -> None:
        """A project is only metadata on its keys."""
        self._push_keys(VirtualKey.objects.filter(project_id=project_id))

    def push_all(self) -> None:
        """Everything again, overwriting deployments even when unchanged (a
        repair after LiteLLM was edited by hand), then `prune`."""
        listed = listing.listed_deployments(self.client)
        org_ids = set(Team.objects.values_list("organization_id", flat=True))
        org_ids |= set(ModelRoute.objects.values_list("organization_id", flat=True))
        org_ids |= {row["model_info"].get("org") for row in listed.values()} - {None}
        for org_id in sorted(org_ids):
            self.push_routes(org_id, listed=listed, force=True)
        self.prune()

    def prune(self) -> None:
        """Delete what LiteLLM holds for the portal but the portal no longer
        has: teams, and secrets that are revoked, past their grace period, or
        of a key creation that rolled back (nobody ever saw that plaintext)."""
        live = live_hashes()
        self._delete_tokens([token for token in listing.portal_keys(self.client) if token not in live])
        portal_teams = {team_id(pk) for pk in Team.objects.values_list("pk", flat=True)}
        gone = sorted(set(listing.listed_teams(self.client)) - portal_teams)
        if gone:
            self._ignore_missing("/team/delete", {"team_ids": gone})

    def _upsert_deployment(self, want: JSON, have: JSON | None, *, force: bool) -> None:
        """`/model/update` never rewrites model_info and no LiteLLM update can
        drop a parameter, so: PATCH when parameters were only added or changed,
        delete and re-add when one was removed, nothing when unchanged."""
        dep_id, info = want["model_info"]["id"], (have or {}).get("model_info") or {}
        if have is None:
            self.client.post("/model/new", want)
        elif set(info.get("portal_params") or ()) - set(want["litellm_params"]):
            self.client.post("/model/delete", {"id": dep_id})
            self.client.post("/model/new", want)
        elif force or info.get("portal_fingerprint") != want["model_info"]["portal_fingerprint"]:
            self.client.request("PATCH", f"/model/{dep_id}/update", body=want)

    def _ignore_missing(self, path: str, body: JSON) -> None:
        try:
            self.client.post(path, body)
        except LiteLLMNotFound:
            pass  # already gone

    def _delete_tokens(self, hashes: list[str]) -> None:
        if hashes:  # LiteLLM deletes those it has, and answers 404 only if it has none
            self._ignore_missing("/key/delete", {"keys": hashes})

    def register_secret(self, key: VirtualKey, plaintext: str) -> None:
        """Tell LiteLLM a new secret (creation, or rotation: then the spend of
        the rotated-out secret carries over, so rotating never resets a budget).
        Raises `LiteLLMAdminError` (the key is then rolled back) if LiteLLM
        cannot take it after bounded retries."""
        key = key_query().get(pk=key.pk)
        self.ensure_team(key.team_id)
        body = {"key": plaintext, **key_settings(key, key.key_hash), "spend": self._spend_so_far(key),
                "blocked": key.status == KeyStatus.BLOCKED}
        try:
            self.client.post("/key/generate", body)
        except LiteLLMAdminError:
            if not self._has_token(key.key_hash):  # else: a retried attempt had got through
                raise

    def _has_token(self, sha: str) -> bool:
        try:
            self.client.get("/key/info", key=sha)
        except LiteLLMAdminError:
            return False
        return True

    def _spend_so_far(self, key: VirtualKey) -> float:
        previous = KeyGraceHash.objects.filter(key=key).order_by("-pk").values_list("key_hash", flat=True).first()
        if previous is None:
            return 0.0
        try:
            return float(self.client.get("/key/info", key=previous)["info"].get("spend") or 0)
        except LiteLLMNotFound:
            return float(usage.period_spend("key", key.pk, key.budget_period, timezone.now()))

    def ensure_state(self) -> bool:
        """LiteLLM keeps its state in its own database: nothing is ever lost to reload."""
        return False

    def drift(self) -> list[str]:
        return drift_report(self.client)

    def pull_spend(self, since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
        return spend.pull_spend(self.client, since, until)


__all__ = ["AdminBackend"]
