"""The managed backend (the default): the portal writes the documents its
LiteLLM plugin reads into Redis (`gateway.plugin.contract`), then tells every
proxy on a pub/sub channel. Spend counters a Redis restart lost come back
from the usage rollups; usage itself reaches the portal by the plugin's stream."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import redis
from django.utils import timezone

from gateway import documents, usage
from gateway.backends.base import register
from gateway.models import VirtualKey
from gateway.plugin import contract
from gateway.redis_connection import redis_client
from portal.models import Organization, Project, Team

log = logging.getLogger(__name__)

BUDGET_SCOPES: list[tuple[str, Any]] = [("org", Organization), ("team", Team), ("project", Project),
                                        ("key", VirtualKey)]


@register("managed")
class ManagedBackend:
    """Writes the documents the plugin reads, then tells every proxy."""

    name = "managed"
    runs_plugin_proxy = True
    ends_graces_itself = True  # the plugin reads each rotated-out secret's grace_until

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.r = client or redis_client()
        self._set = self.r.register_script(contract.SET_IF_NEWER)
        self._delete = self.r.register_script(contract.DELETE_IF_NOT_NEWER)

    def _version(self) -> int:
        return int(self.r.incr(contract.VERSION))

    def _write(self, key: str, doc: dict[str, Any], v: int, expire_at: float | None = None) -> None:
        doc = {**doc, "v": v}
        self._set(keys=[key], args=[json.dumps(doc, separators=(",", ":")), v, int(expire_at or 0)])

    def _write_and_publish(self, writes: list[tuple[str, dict[str, Any], int, float | None]], kind: str,
                           object_id: int, **extra: Any) -> None:
        """The documents, then the event, in one round trip: a pipeline keeps the order, so every
        document is written before a proxy hears of it (a revocation waits for this push). If Redis
        has lost its script cache (a restart), the plain way, which loads the script, does it again."""
        pipe = self.r.pipeline(transaction=False)
        for name, doc, v, expire_at in writes:
            pipe.evalsha(self._set.sha, 1, name, json.dumps({**doc, "v": v}, separators=(",", ":")), v,
                         int(expire_at or 0))
        pipe.publish(contract.EVENTS, json.dumps({"type": kind, "id": object_id, **extra}))
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            for name, doc, v, expire_at in writes:
                self._write(name, doc, v, expire_at)
            self._publish(kind, object_id, **extra)

    def _publish(self, kind: str, object_id: int, **extra: Any) -> None:
        self.r.publish(contract.EVENTS, json.dumps({"type": kind, "id": object_id, **extra}))

    def push(self, kind: str, object_id: int) -> None:
        getattr(self, f"push_{kind}")(object_id)

    def push_key(self, key_id: int) -> None:
        v = self._version()
        key = (VirtualKey.objects.select_related("owner").prefetch_related("allowed_routes")
               .filter(pk=key_id).first())
        if key is None:
            self._delete(keys=[contract.key_doc(key_id)], args=[v])
            self._publish("key", key_id)
            return
        self._restore_if_budgeted("key", key)
        hashes = documents.hash_documents(key)
        writes: list[tuple[str, dict[str, Any], int, float | None]] = [
            (contract.hash_doc(sha), {"key_id": key.pk, "grace_until": grace_until}, v,
             grace_until + 7 * 86400 if grace_until is not None else None)
            for sha, grace_until in hashes]
        writes.append((contract.key_doc(key.pk), documents.key_document(key), v, None))
        self._write_and_publish(writes, "key", key.pk, hashes=[sha for sha, _ in hashes])

    def push_organization(self, org_id: int) -> None:
        v = self._version()
        org = Organization.objects.filter(pk=org_id).first()
        if org is None:
            self._delete(keys=[contract.org_doc(org_id)], args=[v])
        else:
            self._restore_if_budgeted("org", org)
            self._write(contract.org_doc(org.pk), documents.org_document(org), v)
        self._publish("org", org_id)

    def push_routes(self, org_id: int) -> None:
        self.push_organization(org_id)
        self.push_models()

    def push_models(self) -> None:
        v = self._version()
        self._write(contract.MODELS, documents.models_document(), v)
        self._publish("models", 0, v=v)

    def push_team(self, team_id: int) -> None:
        v = self._version()
        team = Team.objects.filter(pk=team_id).first()
        if team is None:
            self._delete(keys=[contract.team_doc(team_id)], args=[v])
        else:
            self._restore_if_budgeted("team", team)
            self._write(contract.team_doc(team.pk), documents.team_document(team), v)
        self._publish("team", team_id)

    def push_project(self, project_id: int) -> None:
        v = self._version()
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            self._delete(keys=[contract.project_doc(project_id)], args=[v])
        else:
            self._restore_if_budgeted("project", project)
            self._write(contract.project_doc(project.pk), documents.project_document(project), v)
        self._publish("project", project_id)

    def push_all(self) -> None:
        """Everything, again; then restore missing spend counters from the
        database and mark the state as loaded."""
        for org_id in Organization.objects.values_list("pk", flat=True):
            self.push_organization(org_id)
        for team_id in Team.objects.values_list("pk", flat=True):
            self.push_team(team_id)
        for project_id in Project.objects.values_list("pk", flat=True):
            self.push_project(project_id)
        for key_id in VirtualKey.objects.values_list("pk", flat=True).iterator():
            self.push_key(key_id)
        self.push_models()
        self.restore_spend()
        self.r.set(contract.CONTRACT, contract.contract_document(timezone.now().timestamp()))  # read by the plugin
        self.r.set(contract.EPOCH, str(timezone.now().timestamp()))
        self._publish("reset", 0)

    def restore_spend(self) -> int:
        """Counters Redis lost (a restart without persistence) come back from
        the usage rollups. Existing counters are left alone: they may hold
        spend the database has not ingested yet."""
        now = timezone.now()
        restored = 0
        for scope, model in BUDGET_SCOPES:
            with_budget = model.objects.exclude(max_budget=None, soft_budget=None)
            for obj in with_budget.only("pk", "budget_period").iterator():
                restored += self._restore_counter(scope, obj.pk, obj.budget_period, now)
        return restored

    def _restore_counter(self, scope: str, ident: int, period: str, now: dt.datetime) -> int:
        """The spend counter of the period containing `now`, from the database
        when Redis has none (SET NX): 1 if it was restored."""
        name = contract.budget_keys(scope, ident, contract.period_start(period, now))[0]
        if self.r.exists(name):
            return 0
        nano = int(usage.period_spend(scope, ident, period, now) * contract.NANO)
        if not self.r.set(name, nano, nx=True):
            return 0
        end = contract.period_end(period, now)
        if end:
            self.r.expireat(name, int(end.timestamp()) + 7 * 86400)
        return 1

    def _restore_if_budgeted(self, scope: str, obj: Any) -> None:
        """A budget added or changed mid-period starts from the period's spend
        so far, not from zero: pushed before the document, so that no proxy
        admits against an empty counter."""
        if obj.max_budget is not None or obj.soft_budget is not None:
            self._restore_counter(scope, obj.pk, obj.budget_period, timezone.now())

    def state_loaded(self) -> bool:
        return bool(self.r.exists(contract.EPOCH))

    def ensure_state(self) -> bool:
        """After Redis lost its data (restart without persistence), push
        everything again. Returns whether it had to."""
        if self.state_loaded():
            return False
        log.warning("gateway state missing from Redis (restart?); pushing everything again")
        self.push_all()
        return True

    def register_secret(self, key: VirtualKey, plaintext: str) -> None:
        """Nothing to do: the plugin knows a secret by its hash, pushed after commit."""

    def pull_spend(self, since: dt.datetime | None = None) -> int:
        """Nothing to pull: the plugin streams every request's usage to the portal."""
        return 0

    def expected(self) -> dict[str, dict[str, Any]]:
        """Every document as the database says it should be (without "v")."""
        out: dict[str, dict[str, Any]] = {}
        for org in Organization.objects.all():
            out[contract.org_doc(org.pk)] = documents.org_document(org)
        for team in Team.objects.all():
            out[contract.team_doc(team.pk)] = documents.team_document(team)
        for project in Project.objects.all():
            out[contract.project_doc(project.pk)] = documents.project_document(project)
        for key in VirtualKey.objects.select_related("owner").prefetch_related("allowed_routes").iterator(500):
            out[contract.key_doc(key.pk)] = documents.key_document(key)
            for sha, grace_until in documents.hash_documents(key):
                out[contract.hash_doc(sha)] = {"key_id": key.pk, "grace_until": grace_until}
        out[contract.MODELS] = documents.models_document()
        return out

    def drift(self) -> list[str]:
        """What differs between the database and Redis, one line each."""
        problems = []
        raw = self.r.get(contract.CONTRACT)
        have = contract.contract_version(raw)
        if (raw is not None or self.state_loaded()) and have != contract.CONTRACT_VERSION:
            problems.append(f"contract {contract.CONTRACT}: Redis has version {have}, the portal speaks "
                            f"{contract.CONTRACT_VERSION} (a full push writes it)")
        for name, want in self.expected().items():
            raw = self.r.get(name)
            if raw is None:
                problems.append(f"missing {name}")
                continue
            have = json.loads(raw)
            have.pop("v", None)
            if have != json.loads(json.dumps(want)):
                problems.append(f"stale   {name}")
        return problems
