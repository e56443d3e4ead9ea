"""The "litellm-admin" push mode: the portal drives LiteLLM's own management
API (for a LiteLLM that keeps its own Postgres) instead of our plugin.

Object mapping (ids are stable, so a push is an idempotent upsert):
- team `T`          -> LiteLLM team `portal-team-T` (`/team/new`, `/team/update`, `/team/delete`)
- route deployment  -> LiteLLM model `portal-dep-D` in group `<org slug>/<route>`
- key secret        -> one LiteLLM key per SHA-256 (current secret and rotated-out
                       ones still in their grace period); LiteLLM is told the
                       plaintext once, by `register_key`, and only the hash later
- organization, project: LiteLLM has no free equivalent (its organizations
  are an Enterprise feature), so their budgets are enforced in managed mode only.

After switching a running portal to this mode, run `gateway_sync` once."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone

from gateway import documents, usage
from gateway.models import KeyGraceHash, KeyStatus, ModelRoute, RouteDeployment, SyncKind, VirtualKey
from gateway.plugin import contract
from portal.models import BudgetFields, Team

log = logging.getLogger(__name__)
JSON = dict[str, Any]

BUDGET_DURATION = {"daily": "1d", "weekly": "7d", "monthly": "30d"}  # LiteLLM snaps 7d to Monday, 30d to the 1st
# LiteLLM reads an empty `models` list as "every model on the proxy"; a name
# no route can have (route names start with a letter or digit) means "none".
NO_MODELS = "__portal_no_models__"
TEAM_PREFIX, DEPLOYMENT_PREFIX = "portal-team-", "portal-dep-"
SPEND_PAGE_SIZE = 1000  # the most /spend/logs/v2 serves per page
KEY_PAGE_SIZE = 100  # the most /key/list serves per page

# Tests point these at an httpx.MockTransport and a sleep that only records.
TRANSPORT: httpx.BaseTransport | None = None
SLEEP: Callable[[float], None] = time.sleep

_SK = re.compile(r"sk-[A-Za-z0-9_\-*.]{3,}")
_local = threading.local()


class LiteLLMAdminError(Exception):
    """LiteLLM refused or could not be reached. `permanent`: retrying the same
    request will not help (a 4xx); otherwise it may (network, 429, 5xx)."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class LiteLLMNotFound(LiteLLMAdminError):
    """A 404: the object is not in LiteLLM (deletes treat this as done)."""


# The HTTP client -------------------------------------------------------------

class AdminClient:
    """All HTTP to LiteLLM's management API: master-key auth, timeouts, and
    bounded retries with exponential backoff (honouring Retry-After) on
    network errors, 429 and 5xx. Never logs bodies: they hold key plaintext
    (only `/key/generate`) and provider secrets (`/model/*`)."""

    attempts = 3
    backoff = 0.5
    max_wait = 30.0
    timeout = httpx.Timeout(30.0, connect=5.0)  # /model/* reload LiteLLM's router: slow

    def __init__(self, *, base_url: str | None = None, master_key: str | None = None,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] | None = None) -> None:
        master_key = settings.LITELLM_MASTER_KEY if master_key is None else master_key
        if not master_key:
            raise LiteLLMAdminError("LITELLM_MASTER_KEY is not set", permanent=True)
        self.sleep = sleep or SLEEP
        self.http = httpx.Client(base_url=base_url or settings.LITELLM_ADMIN_URL, timeout=self.timeout,
                                 headers={"Authorization": f"Bearer {master_key}"}, transport=transport or TRANSPORT)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: JSON) -> Any:
        return self.request("POST", path, body=body)

    def request(self, method: str, path: str, *, body: JSON | None = None, params: JSON | None = None) -> Any:
        error = LiteLLMAdminError(f"{method} {path}: not attempted", permanent=False)
        for attempt in range(1, self.attempts + 1):
            wait = self.backoff * 2 ** (attempt - 1)
            try:
                response = self.http.request(method, path, json=body, params=params)
            except httpx.TransportError as exc:
                error = LiteLLMAdminError(f"{method} {path}: LiteLLM unreachable ({type(exc).__name__})",
                                          permanent=False)
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                error = _error(method, path, response)
                if error.permanent:
                    raise error
                wait = _retry_after(response) or wait
            if attempt < self.attempts:
                log.warning("LiteLLM %s %s failed (%s); retry %d in %.1fs", method, path, error.status or "network",
                            attempt, min(wait, self.max_wait))
                self.sleep(min(wait, self.max_wait))
        raise error


def _error(method: str, path: str, response: httpx.Response) -> LiteLLMAdminError:
    status = response.status_code
    message = f"{method} {path}: LiteLLM answered {status}: {_message(response)}"
    if status == 404:
        return LiteLLMNotFound(message, permanent=True, status=status)
    return LiteLLMAdminError(message, permanent=status != 429 and status < 500, status=status)


def _message(response: httpx.Response) -> str:
    """LiteLLM's error text without anything secret: FastAPI's 422 echoes the
    offending input (maybe a key), so only its locations and messages are kept."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    detail = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if isinstance(detail, list):
        text = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in detail
                         if isinstance(e, dict))
    elif isinstance(detail, dict):
        text = str(detail.get("message", detail.get("error", "")))
    else:
        text = str(detail)
    return _SK.sub("sk-***", text)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def client() -> AdminClient:
    """One client (one connection pool) per thread and configuration."""
    config = (settings.LITELLM_ADMIN_URL, settings.LITELLM_MASTER_KEY, TRANSPORT)
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != config:
        _local.client = cached = (config, AdminClient())
    return cached[1]


# What LiteLLM should hold ----------------------------------------------------

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


def _key_query() -> Any:
    return VirtualKey.objects.select_related("organization", "team", "owner").prefetch_related("allowed_routes")


def _secrets(key: VirtualKey, now: dt.datetime) -> tuple[list[str], list[str]]:
    """(hashes that must work, rotated-out hashes whose grace has ended)."""
    graces = list(KeyGraceHash.objects.filter(key=key).values_list("key_hash", "expires_at"))
    live = [key.key_hash] + [sha for sha, end in graces if end > now]
    return live, [sha for sha, end in graces if end <= now]


def _live_hashes() -> set[str]:
    usable = VirtualKey.objects.exclude(status=KeyStatus.REVOKED)
    graces = KeyGraceHash.objects.filter(key__in=usable, expires_at__gt=timezone.now())
    return set(usable.values_list("key_hash", flat=True)) | set(graces.values_list("key_hash", flat=True))


# Pushing ---------------------------------------------------------------------

class AdminBackend:
    """Same interface as `sync.ManagedBackend`; see the module docstring."""

    def __init__(self, admin: AdminClient | None = None) -> None:
        self.client = admin or client()

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
        key = _key_query().filter(pk=pk).first()
        if key is None:  # deleted with its project after revocation
            self._delete_tokens(self._tokens_of(pk))
            return
        live, expired = _secrets(key, timezone.now())
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
        have = listed if listed is not None else self.listed_deployments()
        want = deployment_payloads(org_id)
        for dep_id, payload in want.items():
            self._upsert_deployment(payload, have.get(dep_id), force=force)
        for dep_id, row in have.items():
            if dep_id not in want and row["model_info"].get("org") == org_id:
                self.client.post("/model/delete", {"id": dep_id})
        for team_pk in Team.objects.filter(organization_id=org_id).values_list("pk", flat=True):
            self.push_team(team_pk)
        self._push_keys(VirtualKey.objects.filter(organization_id=org_id).exclude(status=KeyStatus.REVOKED))

    def _push_keys(self, keys: Any) -> None:
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
        listed = self.listed_deployments()
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
        live = _live_hashes()
        self._delete_tokens([k["token"] for k in self.iter_keys()
                             if (k.get("metadata") or {}).get("portal_key_id") and k["token"] not in live])
        portal_teams = {team_id(pk) for pk in Team.objects.values_list("pk", flat=True)}
        gone = sorted(set(self.listed_teams()) - portal_teams)
        if gone:
            self._ignore_missing("/team/delete", {"team_ids": gone})

    def listed_teams(self) -> dict[str, JSON]:
        return {t["team_id"]: t for t in self.client.get("/team/list") or []
                if str(t.get("team_id", "")).startswith(TEAM_PREFIX)}

    def listed_deployments(self) -> dict[str, JSON]:
        rows = self.client.get("/model/info").get("data") or []
        return {row["model_info"]["id"]: row for row in rows
                if str((row.get("model_info") or {}).get("id", "")).startswith(DEPLOYMENT_PREFIX)}

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

    def iter_keys(self, **params: Any) -> Iterator[JSON]:
        """LiteLLM's keys (full rows, with `token`, the hash), page by page."""
        page, pages = 1, 1
        while page <= pages:
            body = self.client.get("/key/list", return_full_object="true", size=KEY_PAGE_SIZE, page=page, **params)
            yield from (k for k in body.get("keys") or [] if isinstance(k, dict))
            page, pages = page + 1, int(body.get("total_pages") or 0)

    def _tokens_of(self, key_pk: int) -> list[str]:
        rows = self.iter_keys(key_alias=f"/key-{key_pk}.", substring_matching="true")
        return [r["token"] for r in rows if (r.get("metadata") or {}).get("portal_key_id") == key_pk]

    def register_key(self, key: VirtualKey, plaintext: str) -> None:
        """Tell LiteLLM a new secret (creation, or rotation: then the spend of
        the rotated-out secret carries over, so rotating never resets a budget)."""
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

    def drift(self) -> list[str]:
        """What differs between the portal and LiteLLM, one line each."""
        return self._team_drift() + self._deployment_drift() + self._key_drift()

    def _team_drift(self) -> list[str]:
        have, problems = self.listed_teams(), []
        for team in Team.objects.select_related("organization"):
            want = team_payload(team)
            problems += _compare(f"team {want['team_id']}", want, have.pop(want["team_id"], None),
                                 ("team_alias", "models", "max_budget", "soft_budget", "budget_duration"))
        return problems + [f"orphan  team {tid}" for tid in sorted(have)]

    def _deployment_drift(self) -> list[str]:
        have, problems = self.listed_deployments(), []
        for dep_id, want in deployment_payloads().items():
            row = have.pop(dep_id, None)
            if row is None:
                problems.append(f"missing model {dep_id}")
            elif (row["model_name"], row["model_info"].get("portal_fingerprint")) != (
                    want["model_name"], want["model_info"]["portal_fingerprint"]):
                problems.append(f"stale   model {dep_id}")
        return problems + [f"orphan  model {dep_id}" for dep_id in sorted(have)]

    def _key_drift(self) -> list[str]:
        have = {k["token"]: k for k in self.iter_keys() if (k.get("metadata") or {}).get("portal_key_id")}
        problems, now = [], timezone.now()
        for key in _key_query().iterator(500):
            live, expired = _secrets(key, now)
            revoked = key.status == KeyStatus.REVOKED
            for sha in [] if revoked else live:
                want = {**key_settings(key, sha), "blocked": key.status == KeyStatus.BLOCKED}
                row = have.pop(sha, None)
                row = row and {**row, "blocked": bool(row.get("blocked"))}
                problems += _compare(f"key {key.pk} ({key.key_prefix}...)", want, row,
                                     ("key_alias", "team_id", "models", "max_budget", "budget_duration",
                                      "rpm_limit", "tpm_limit", "blocked"))
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


def register_key(key: VirtualKey, plaintext: str) -> None:
    """Called by `key_create` and `key_rotate` inside their transaction, the
    only moment the plaintext exists. Raises `LiteLLMAdminError` (the key is
    then rolled back) if LiteLLM cannot take it after bounded retries."""
    AdminBackend().register_key(_key_query().get(pk=key.pk), plaintext)


# Spend back from LiteLLM -------------------------------------------------------

def pull_spend(since: dt.datetime, until: dt.datetime | None = None, *, admin: AdminClient | None = None) -> int:
    """Store LiteLLM's spend logs since `since` as usage records (once per
    request id, so overlapping windows are harmless). Uses `/spend/logs/v2`:
    `/spend/logs` is deprecated, filters by whole days and returns at most
    10,000 rows with their full prompts. Returns how many records were new."""
    http = admin or client()
    until = until or timezone.now() + dt.timedelta(minutes=1)
    window = {"start_date": _litellm_time(since), "end_date": _litellm_time(until), "page_size": SPEND_PAGE_SIZE,
              "sort_by": "startTime", "sort_order": "asc"}
    stored, page = 0, 1
    while True:  # not up to `total_pages`: LiteLLM caps the total it counts at 10,000
        logs = [row for row in http.get("/spend/logs/v2", page=page, **window).get("data") or []
                if isinstance(row, dict)]
        events = spend_events(logs)
        stored += usage.store(events) if events else 0
        if len(logs) < SPEND_PAGE_SIZE:
            return stored
        page += 1


def _litellm_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def spend_events(logs: list[JSON]) -> list[JSON]:
    """Spend logs as the plugin's usage events; logs of keys the portal does
    not know (LiteLLM's own keys, deleted keys) are skipped."""
    owners = _keys_by_hash({str(row.get("api_key") or "") for row in logs} - {""})
    return [_event(row, owners[row["api_key"]]) for row in logs if row.get("api_key") in owners]


def _keys_by_hash(hashes: set[str]) -> dict[str, VirtualKey]:
    keys = {k.key_hash: k for k in VirtualKey.objects.filter(key_hash__in=hashes).select_related("organization",
                                                                                                  "owner")}
    graces = KeyGraceHash.objects.filter(key_hash__in=hashes - keys.keys()).select_related("key__organization",
                                                                                            "key__owner")
    return keys | {g.key_hash: g.key for g in graces}


def _event(row: JSON, key: VirtualKey) -> JSON:
    group = str(row.get("model_group") or row.get("model") or "")
    slug = f"{key.organization.slug}/"
    error = _error_information(row.get("metadata"))
    failed = row.get("status") not in (None, "", "success")
    return {
        "request_id": str(row["request_id"]), "ts": _timestamp(row.get("startTime")), "key_id": key.pk,
        "key_hash": row["api_key"], "org": key.organization_id, "team": key.team_id, "project": key.project_id,
        "owner": key.owner.email if key.owner else None, "route": group.removeprefix(slug), "group": group,
        "deployment": str(row.get("model_id") or ""), "provider_model": str(row.get("model") or ""),
        "prompt_tokens": int(row.get("prompt_tokens") or 0), "completion_tokens": int(row.get("completion_tokens") or 0),
        "cost_nano": round(float(row.get("spend") or 0) * contract.NANO),
        "latency_ms": float(row.get("request_duration_ms") or 0), "status": "error" if failed else "success",
        "status_code": _int(error.get("error_code"), 500 if failed else 200),
        "error_class": str(error.get("error_class") or "") if failed else "", "trace_id": "",
    }


def _error_information(metadata: Any) -> JSON:
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return {}
    info = metadata.get("error_information") if isinstance(metadata, dict) else None
    return info if isinstance(info, dict) else {}


def _timestamp(value: Any) -> float:
    moment = dt.datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


__all__ = ["AdminBackend", "AdminClient", "LiteLLMAdminError", "LiteLLMNotFound", "pull_spend", "register_key"]
