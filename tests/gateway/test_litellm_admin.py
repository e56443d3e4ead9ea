"""The litellm-admin mode, against a fake LiteLLM at the HTTP level.

LiteLLM with its own database cannot run here, so the fake is held to the
installed LiteLLM instead: every request must hit a route of the proxy's
route table, GET parameters must be ones the endpoint declares, and every
body must validate against the request model the endpoint itself declares
(from `litellm.proxy._types` / `litellm.types.router`), with unknown fields
refused (LiteLLM's models silently drop them)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.utils import timezone
from pydantic import BaseModel, ConfigDict

from gateway import litellm_admin, sync, tasks_admin
from gateway.litellm_admin import NO_MODELS, AdminBackend, AdminClient, LiteLLMAdminError, pull_spend
from gateway.models import KeyGraceHash, SyncOutbox, UsageDaily, UsageRecord, VirtualKey
from gateway.services import keys
from portal.access import actor_for_user
from tests.factories import Tenant

pytestmark = pytest.mark.django_db(transaction=True)  # pushes run after commit, as in production
JSON = dict[str, Any]


def sha(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


# LiteLLM's own contract ---------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    regex: re.Pattern[str]
    query: frozenset[str]
    body: type[BaseModel] | None


@functools.cache
def litellm_endpoints() -> tuple[Endpoint, ...]:
    """The installed proxy's route table (importing it takes a few seconds)."""
    from fastapi.routing import iter_route_contexts
    from litellm.proxy.proxy_server import app

    out = []
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route.original_route, "dependant", None)
        if dependant is None:
            continue
        body = [p.field_info.annotation for p in dependant.body_params]
        query = frozenset(q.alias for q in dependant.query_params)
        for method in route.methods or ():
            out.append(Endpoint(method, route.path, route.path_regex, query, body[0] if len(body) == 1 else None))
    return tuple(out)


def endpoint(method: str, path: str) -> Endpoint | None:
    exact = [e for e in litellm_endpoints() if e.method == method and e.path == path]
    return (exact or [e for e in litellm_endpoints() if e.method == method and e.regex.match(path)] or [None])[0]


@functools.cache
def _expected_models() -> dict[tuple[str, str], type[BaseModel]]:
    from litellm.proxy import _types as t
    from litellm.types.router import Deployment, updateDeployment

    return {("POST", "/key/generate"): t.GenerateKeyRequest, ("POST", "/key/update"): t.UpdateKeyRequest,
            ("POST", "/key/delete"): t.KeyRequest, ("POST", "/key/block"): t.BlockKeyRequest,
            ("POST", "/key/unblock"): t.BlockKeyRequest, ("POST", "/team/new"): t.NewTeamRequest,
            ("POST", "/team/update"): t.UpdateTeamRequest, ("POST", "/team/delete"): t.DeleteTeamRequest,
            ("POST", "/model/new"): Deployment, ("PATCH", "/model/{model_id}/update"): updateDeployment,
            ("POST", "/model/delete"): t.ModelInfoDelete}


@functools.cache
def strict(model: type[BaseModel]) -> type[BaseModel]:
    """The model with unknown fields refused instead of dropped."""
    return type(f"Strict{model.__name__}", (model,),
                {"model_config": ConfigDict(**{**model.model_config, "extra": "forbid"}), "__module__": __name__})


@functools.cache
def litellm_param_names() -> frozenset[str]:
    """What a deployment's litellm_params may hold: router parameters, or
    keyword arguments LiteLLM passes on to `litellm.completion`."""
    import litellm
    from litellm.types.router import LiteLLM_Params, LiteLLMParamsTypedDict

    return frozenset(LiteLLM_Params.model_fields) | frozenset(LiteLLMParamsTypedDict.__annotations__) | frozenset(
        inspect.signature(litellm.completion).parameters)


def contract_problems(request: httpx.Request) -> list[str]:
    """Why LiteLLM would not take this request as we meant it (empty: it would)."""
    method, path = request.method, request.url.path
    found = endpoint(method, path)
    if found is None:
        return [f"{method} {path}: no such route in LiteLLM"]
    if method == "GET":
        unknown = set(request.url.params) - found.query
        return [f"{method} {path}: unknown query parameters {sorted(unknown)}"] if unknown else []
    body = json.loads(request.content)
    expected = _expected_models().get((method, found.path))
    if found.body is None or found.body is not expected:
        return [f"{method} {path}: endpoint takes {found.body}, we expected {expected}"]
    problems = [f"{method} {path}: unknown field {k}" for k in sorted(set(body) - set(found.body.model_fields))]
    try:
        strict(found.body).model_validate(body)
    except ValueError as exc:
        problems.append(f"{method} {path}: {exc}")
    params = body.get("litellm_params") or {}
    problems += [f"{method} {path}: unknown litellm_params {k}" for k in sorted(set(params) - litellm_param_names())]
    return problems


# The fake LiteLLM ---------------------------------------------------------------

@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    raw: str


@dataclass
class FakeLiteLLM:
    """Answers like LiteLLM with a database would, from in-memory tables."""

    keys: dict[str, JSON] = field(default_factory=dict)  # by token (the SHA-256)
    teams: dict[str, JSON] = field(default_factory=dict)
    models: dict[str, JSON] = field(default_factory=dict)
    spend_logs: list[JSON] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    outage: int = 0  # answer the next N requests with 503
    retry_after: str | None = None
    down: set[str] = field(default_factory=set)  # paths answered with 503
    lose_reply: set[str] = field(default_factory=set)  # paths whose next reply is lost after the write

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.violations += contract_problems(request)
        body = json.loads(request.content) if request.content else None
        raw = f"{request.method} {request.url} {dict(request.headers)} {request.content.decode()}"
        self.calls.append(Call(request.method, request.url.path, dict(request.url.params), body, raw))
        if request.headers.get("authorization") != "Bearer sk-master-test-000000":
            return self.error(401, "Authentication Error")
        if self.outage or request.url.path in self.down:
            self.outage = max(0, self.outage - 1)
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return httpx.Response(503, json={"error": {"message": "DB unavailable", "code": "503"}}, headers=headers)
        path = request.url.path
        if request.method == "PATCH" and (match := re.fullmatch(r"/model/([^/]+)/update", path)):
            return self.model_patch(match[1], body)
        handler: Callable[..., httpx.Response] = getattr(self, path.strip("/").replace("/", "_"))
        response = handler(body if request.method == "POST" else dict(request.url.params))
        if path in self.lose_reply:
            self.lose_reply.discard(path)
            raise httpx.ReadTimeout("reply lost", request=request)
        return response

    @staticmethod
    def error(status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": message, "type": "x", "param": None,
                                                      "code": str(status)}})

    def paths(self, method: str = "POST", since: int = 0) -> list[str]:
        return [c.path for c in self.calls[since:] if c.method == method]

    def bodies(self, path: str) -> list[Any]:
        return [c.body for c in self.calls if c.path == path]

    # keys
    def key_generate(self, body: JSON) -> httpx.Response:
        token = sha(body["key"])
        if token in self.keys:
            return self.error(400, "Unique constraint failed on the fields: (`token`)")
        row = {k: v for k, v in body.items() if k not in ("key", "duration")}
        self.keys[token] = {"token": token, "blocked": False, **row, "expires": self._expires(body.get("duration"))}
        return httpx.Response(200, json={**row, "key": body["key"], "token": token, "token_id": token})

    def key_update(self, body: JSON) -> httpx.Response:
        row = self.keys.get(body["key"])
        if row is None:
            return self.error(404, f"Key not found: {body['key']}")
        row.update({k: v for k, v in body.items() if k not in ("key", "duration")})
        if "duration" in body:
            row["expires"] = self._expires(body["duration"])
        return httpx.Response(200, json={"key": body["key"], **row})

    def _expires(self, duration: str | None) -> str | None:
        return None if duration is None else (timezone.now() + dt.timedelta(seconds=int(duration[:-1]))).isoformat()

    def key_block(self, body: JSON, blocked: bool = True) -> httpx.Response:
        if body["key"] not in self.keys:
            return self.error(404, "Key not found.")
        self.keys[body["key"]]["blocked"] = blocked
        return httpx.Response(200, json=self.keys[body["key"]])

    def key_unblock(self, body: JSON) -> httpx.Response:
        return self.key_block(body, blocked=False)

    def key_delete(self, body: JSON) -> httpx.Response:
        found = [k for k in body["keys"] if k in self.keys]
        if not found:
            return self.error(404, "No keys found")
        for token in found:
            del self.keys[token]
        return httpx.Response(200, json={"deleted_keys": body["keys"]})

    def key_info(self, params: JSON) -> httpx.Response:
        row = self.keys.get(params["key"])
        if row is None:
            return self.error(404, "Key not found in database")
        return httpx.Response(200, json={"key": params["key"], "info": {k: v for k, v in row.items() if k != "token"}})

    def key_list(self, params: JSON) -> httpx.Response:
        rows = list(self.keys.values())
        if "key_alias" in params:
            rows = [r for r in rows if params["key_alias"].lower() in (r.get("key_alias") or "").lower()]
        size, page = int(params["size"]), int(params["page"])
        return httpx.Response(200, json={"keys": rows[(page - 1) * size: page * size], "total_count": len(rows),
                                         "current_page": page, "total_pages": -(-len(rows) // size)})

    # teams
    def team_new(self, body: JSON) -> httpx.Response:
        if body["team_id"] in self.teams:
            return self.error(400, f"Team id = {body['team_id']} already exists. Please use a different team id.")
        self.teams[body["team_id"]] = dict(body)
        return httpx.Response(200, json=body)

    def team_update(self, body: JSON) -> httpx.Response:
        if body["team_id"] not in self.teams:
            return self.error(404, f"Team not found, passed team_id={body['team_id']}")
        self.teams[body["team_id"]].update(body)
        return httpx.Response(200, json={"team_id": body["team_id"], "data": self.teams[body["team_id"]]})

    def team_delete(self, body: JSON) -> httpx.Response:
        if any(t not in self.teams for t in body["team_ids"]):
            return self.error(404, "Team not found")
        for t in body["team_ids"]:
            del self.teams[t]
        return httpx.Response(200, json={"deleted_teams": body["team_ids"]})

    def team_info(self, params: JSON) -> httpx.Response:
        if params["team_id"] not in self.teams:
            return self.error(404, f"Team not found, passed team_id={params['team_id']}")
        return httpx.Response(200, json={"team_id": params["team_id"], "team_info": self.teams[params["team_id"]]})

    def team_list(self, params: JSON) -> httpx.Response:
        return httpx.Response(200, json=list(self.teams.values()))

    # models
    def model_new(self, body: JSON) -> httpx.Response:
        model_id = body["model_info"]["id"]
        if model_id in self.models:
            return self.error(500, "Unique constraint failed on the fields: (`model_id`)")
        self.models[model_id] = json.loads(json.dumps(body))
        return httpx.Response(200, json={"model_id": model_id, "model_name": body["model_name"]})

    def model_patch(self, model_id: str, body: JSON) -> httpx.Response:
        row = self.models.get(model_id)
        if row is None:
            return self.error(404, f"Model {model_id} not found on proxy.")
        row["model_name"] = body.get("model_name") or row["model_name"]
        row["litellm_params"].update({k: v for k, v in (body.get("litellm_params") or {}).items() if v is not None})
        row["model_info"].update(body.get("model_info") or {})
        return httpx.Response(200, json=row)

    def model_delete(self, body: JSON) -> httpx.Response:
        if body["id"] not in self.models:
            return self.error(400, f"Model with id={body['id']} not found in db")
        del self.models[body["id"]]
        return httpx.Response(200, json={"message": f"Model: {body['id']} deleted successfully"})

    def model_info(self, params: JSON) -> httpx.Response:
        hidden = {"api_key", "api_base", "aws_secret_access_key"}
        return httpx.Response(200, json={"data": [
            {"model_name": m["model_name"], "litellm_params": {k: v for k, v in m["litellm_params"].items()
                                                               if k not in hidden},
             "model_info": {**m["model_info"], "db_model": True}} for m in self.models.values()]})

    # spend
    def spend_logs_v2(self, params: JSON) -> httpx.Response:
        def parse(text: str) -> dt.datetime:
            return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)

        start, end = parse(params["start_date"]), parse(params["end_date"])
        rows = sorted((r for r in self.spend_logs if start <= dt.datetime.fromisoformat(r["startTime"]) <= end),
                      key=lambda r: r["startTime"])
        size, page = int(params["page_size"]), int(params["page"])
        return httpx.Response(200, json={"data": rows[(page - 1) * size: page * size], "total": len(rows),
                                         "page": page, "page_size": size, "total_pages": -(-len(rows) // size)})


@pytest.fixture
def fake(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLiteLLM]:
    """Listed before the tenant fixtures, so that they are built in litellm-admin mode."""
    settings.GATEWAY_MODE = "litellm-admin"
    settings.LITELLM_ADMIN_URL = "http://litellm.test:4000"
    settings.LITELLM_MASTER_KEY = "sk-master-test-000000"
    litellm = FakeLiteLLM()
    monkeypatch.setattr(litellm_admin, "TRANSPORT", httpx.MockTransport(litellm.handle))
    monkeypatch.setattr(litellm_admin, "SLEEP", litellm.sleeps.append)
    yield litellm
    assert litellm.violations == []


def issue(t: Tenant, role: str = "owner", **body: Any) -> Any:
    payload = {"name": "ci key", "team": t.team.pk, "project": t.project.pk} | body
    return t.client(role).post(t.url("keys/"), payload, format="json")


def due_now() -> None:
    SyncOutbox.objects.filter(done_at=None).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


# Tests ----------------------------------------------------------------------------

def test_every_call_is_a_litellm_route_with_a_valid_body(fake: FakeLiteLLM, acme: Tenant) -> None:
    owner, admin = acme.client("owner"), acme.client("admin")
    key = issue(acme, allowed_routes=["chat"], max_budget="10", soft_budget="8", budget_period="weekly",
                rpm_limit=5, tpm_limit=1000, expires_at=(timezone.now() + dt.timedelta(days=3)).isoformat()).json()
    owner.patch(acme.url(f"keys/{key['id']}/"), {"max_budget": None, "budget_period": "none"}, format="json")
    owner.post(acme.url(f"keys/{key['id']}/rotate/"), {"grace_period_seconds": 0}, format="json")
    for action in ("block", "unblock", "revoke"):
        assert owner.post(acme.url(f"keys/{key['id']}/{action}/")).status_code == 200
    route = admin.post(acme.url("routes/"), {"name": "gpt", "timeout_seconds": 30, "input_cost_per_million": 2,
                                             "deployments": [{"credential": acme.credential.pk, "model": "gpt-4o",
                                                              "priority": 0, "litellm_params": {"rpm": 10}}]},
                       format="json").json()
    admin.patch(acme.url(f"routes/{route['id']}/"), {"deployments": [
        {"credential": acme.credential.pk, "model": "gpt-4o", "litellm_params": {"rpm": 20}}]}, format="json")
    admin.patch(acme.url(f"routes/{route['id']}/"), {"deployments": [
        {"credential": acme.credential.pk, "model": "gpt-4o"}]}, format="json")
    team = admin.post(acme.url("teams/"), {"name": "short-lived", "max_budget": 5, "soft_budget": 5,
                                           "budget_period": "daily"}, format="json").json()
    admin.delete(acme.url(f"teams/{team['id']}/"))
    admin.delete(acme.url(f"routes/{route['id']}/"))
    AdminBackend().push_all()
    AdminBackend().drift()
    pull_spend(timezone.now() - dt.timedelta(hours=1))

    assert fake.violations == []
    used = {(c.method, endpoint(c.method, c.path).path) for c in fake.calls}  # type: ignore[union-attr]
    assert set(_expected_models()) <= used, set(_expected_models()) - used
    assert {("GET", "/model/info"), ("GET", "/key/list"), ("GET", "/team/list"), ("GET", "/team/info"),
            ("GET", "/key/info"), ("GET", "/spend/logs/v2")} <= used
    assert not SyncOutbox.objects.filter(done_at=None).exists()


def test_the_contract_check_catches_what_litellm_would_drop_or_refuse() -> None:
    def problems(method: str, path: str, body: JSON) -> list[str]:
        return contract_problems(httpx.Request(method, f"http://x{path}", json=body))

    assert problems("POST", "/key/update", {"key": "a" * 64, "expires": "2030-01-01"})  # not a field: dropped
    assert problems("POST", "/key/update", {"models": []})  # neither key nor key_alias
    assert problems("POST", "/team/new", {"team_id": "t", "budget": 5})
    assert problems("POST", "/model/new", {"model_name": "m", "litellm_params": {"model": "x", "wieght": 1},
                                           "model_info": {"id": "i"}})
    assert problems("POST", "/key/regenerate_all", {})
    assert not problems("POST", "/key/block", {"key": "a" * 64})


def test_a_key_issued_through_the_api_is_generated_in_litellm(fake: FakeLiteLLM, acme: Tenant) -> None:
    expires = timezone.now() + dt.timedelta(days=2)
    body = issue(acme, allowed_routes=["chat"], max_budget="25.50", soft_budget="20", budget_period="monthly",
                 rpm_limit=60, tpm_limit=5000, expires_at=expires.isoformat()).json()
    token = sha(body["key"])
    generate = fake.bodies("/key/generate")[-1]
    assert generate["key"] == body["key"]
    assert generate["team_id"] == f"portal-team-{acme.team.pk}" and generate["models"] == ["acme/chat"]
    assert (generate["max_budget"], generate["soft_budget"], generate["budget_duration"]) == (25.5, 20.0, "30d")
    assert (generate["rpm_limit"], generate["tpm_limit"], generate["blocked"], generate["spend"]) == (60, 5000,
                                                                                                   False, 0.0)
    assert 2 * 86400 - 60 < int(generate["duration"][:-1]) <= 2 * 86400
    assert generate["key_alias"] == f"acme/key-{body['id']}.{token[:8]}"
    assert generate["metadata"] == {"portal_key_id": body["id"], "portal_org_id": acme.org.pk,
                                    "portal_team_id": acme.team.pk, "portal_project_id": acme.project.pk,
                                    "portal_key_name": "ci key", "portal_owner": None}
    # After the commit the outbox push addresses the key by its hash only.
    assert fake.bodies("/key/update")[-1]["key"] == token and fake.bodies("/key/unblock")[-1] == {"key": token}
    assert fake.keys[token]["models"] == ["acme/chat"]


def test_keys_without_routes_get_their_teams_models_and_never_an_empty_list(fake: FakeLiteLLM, acme: Tenant) -> None:
    assert fake.keys[sha(acme.key_plaintext)]["models"] == ["acme/chat"]
    team = fake.teams[f"portal-team-{acme.team.pk}"]
    assert team["models"] == ["acme/chat"] and team["team_alias"] == "acme/acme-platform"
    acme.client("admin").post(acme.url("routes/"), {
        "name": "private", "allowed_teams": [], "deployments": [{"model": "m", "litellm_params": {
            "mock_response": "x"}}]}, format="json")
    assert fake.keys[sha(acme.key_plaintext)]["models"] == ["acme/chat", "acme/private"]
    acme.client("admin").patch(acme.url(f"routes/{acme.route.pk}/"), {"is_active": False}, format="json")
    acme.client("admin").patch(acme.url("routes/" + str(acme.org.routes.get(name="private").pk) + "/"),
                               {"is_active": False}, format="json")
    # LiteLLM reads [] as "every model": a team without routes gets a name no route can have.
    assert fake.teams[f"portal-team-{acme.team.pk}"]["models"] == [NO_MODELS]
    assert fake.keys[sha(acme.key_plaintext)]["models"] == [NO_MODELS]
    assert not fake.models


def test_the_plaintext_goes_only_into_the_generate_body(fake: FakeLiteLLM, acme: Tenant,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.outage = 1  # one retry, so retries are covered too
    created = issue(acme).json()
    rotated = acme.client("owner").post(acme.url(f"keys/{created['id']}/rotate/"), {"grace_period_seconds": 60},
                                        format="json").json()
    for plaintext in (created["key"], rotated["key"], acme.key_plaintext):
        carrying = [c for c in fake.calls if plaintext in c.raw]
        assert carrying and all(c.path == "/key/generate" and c.body["key"] == plaintext for c in carrying)
        assert plaintext not in caplog.text
        assert not SyncOutbox.objects.filter(last_error__contains=plaintext[3:]).exists()


def test_rotation_carries_the_spend_over_and_the_old_secret_dies_with_its_grace(fake: FakeLiteLLM,
                                                                                acme: Tenant) -> None:
    old = sha(acme.key_plaintext)
    fake.keys[old]["spend"] = 3.5
    rotated = acme.client("member").post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": 600},
                                         format="json").json()
    new = sha(rotated["key"])
    assert fake.bodies("/key/generate")[-1]["spend"] == 3.5  # rotating never resets a budget
    assert fake.keys[new]["key_alias"] != fake.keys[old]["key_alias"]  # LiteLLM wants aliases unique
    assert old in fake.keys and fake.keys[old]["models"] == fake.keys[new]["models"]
    assert tasks_admin.sync_expire_grace() == 0
    KeyGraceHash.objects.filter(key_hash=old).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert tasks_admin.sync_expire_grace() == 1  # queues a push through the outbox, which deletes it
    assert old not in fake.keys and new in fake.keys
    assert fake.bodies("/key/delete")[-1] == {"keys": [old]}


def test_rotation_without_grace_deletes_the_old_secret_at_once(fake: FakeLiteLLM, acme: Tenant) -> None:
    old = sha(acme.key_plaintext)
    rotated = acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/rotate/"), format="json").json()
    assert old not in fake.keys and sha(rotated["key"]) in fake.keys


def test_block_unblock_and_revoke_through_the_api(fake: FakeLiteLLM, acme: Tenant) -> None:
    token, owner = sha(acme.key_plaintext), acme.client("owner")
    owner.post(acme.url(f"keys/{acme.key.pk}/block/"))
    assert fake.bodies("/key/block")[-1] == {"key": token} and fake.keys[token]["blocked"] is True
    owner.post(acme.url(f"keys/{acme.key.pk}/unblock/"))
    assert fake.bodies("/key/unblock")[-1] == {"key": token} and fake.keys[token]["blocked"] is False
    owner.post(acme.url(f"keys/{acme.key.pk}/revoke/"))
    assert fake.bodies("/key/delete")[-1] == {"keys": [token]} and token not in fake.keys
    before = len(fake.calls)
    AdminBackend().push_key(acme.key.pk)  # again: LiteLLM's 404 means done
    assert fake.paths(since=before) == ["/key/delete"]


def test_a_key_is_rolled_back_when_litellm_cannot_take_it(fake: FakeLiteLLM, acme: Tenant) -> None:
    count, tokens, before = VirtualKey.objects.count(), set(fake.keys), len(fake.calls)
    fake.down, fake.retry_after = {"/key/generate"}, "7"
    member = actor_for_user(acme.org, acme.users["member"])
    with pytest.raises(LiteLLMAdminError) as caught:
        keys.key_create(actor=member, data={"name": "k", "team": acme.team, "project": acme.project})
    assert not caught.value.permanent and caught.value.status == 503
    assert str(caught.value) == "POST /key/generate: LiteLLM answered 503: DB unavailable"
    assert fake.paths(since=before).count("/key/generate") == 3 and fake.sleeps == [7.0, 7.0]  # bounded, waits from Retry-After
    assert VirtualKey.objects.count() == count and not SyncOutbox.objects.filter(done_at=None).exists()
    fake.down, fake.outage = set(), 1000  # LiteLLM entirely down
    response = issue(acme)  # the API's error handler decides the status; no key is kept or shown
    assert response.status_code >= 500 and "key" not in response.json()
    assert VirtualKey.objects.count() == count and set(fake.keys) == tokens


def test_a_lost_reply_to_generate_is_not_an_error(fake: FakeLiteLLM, acme: Tenant) -> None:
    fake.lose_reply, before = {"/key/generate"}, len(fake.calls)  # stored, but the reply never came
    response = issue(acme)  # the retry is refused as a duplicate; LiteLLM has the key, so that is success
    assert response.status_code == 201
    assert fake.paths(since=before).count("/key/generate") == 2 and sha(response.json()["key"]) in fake.keys


def test_a_503_keeps_the_outbox_row_and_a_later_drain_pushes_it_once(fake: FakeLiteLLM, acme: Tenant) -> None:
    token = sha(acme.key_plaintext)
    fake.outage = 3  # every attempt of the push right after commit
    assert acme.client("owner").patch(acme.url(f"keys/{acme.key.pk}/"), {"rpm_limit": 5},
                                      format="json").status_code == 200
    row = SyncOutbox.objects.get(done_at=None)
    assert (row.kind, row.object_id, row.attempts) == ("key", acme.key.pk, 1)
    assert row.next_attempt_at > timezone.now() and "503" in row.last_error
    assert fake.keys[token].get("rpm_limit") is None and fake.sleeps == [0.5, 1.0]
    assert sync.drain_outbox() == 0  # not due yet: backing off
    due_now()
    assert sync.drain_outbox() == 1
    assert fake.keys[token]["rpm_limit"] == 5 and not SyncOutbox.objects.filter(done_at=None).exists()
    # Pushing the same state again updates; it never creates twice.
    creations = [p for p in fake.paths() if p in ("/key/generate", "/team/new", "/model/new")]
    for _ in range(2):
        AdminBackend().push_all()
    assert [p for p in fake.paths() if p in ("/key/generate", "/team/new", "/model/new")] == creations
    assert "/team/update" in fake.paths()[-10:]
    assert len(fake.keys) == 1 and len(fake.teams) == 1 and len(fake.models) == 1


def test_drift_reports_what_litellm_has_wrong_and_push_all_repairs_it(fake: FakeLiteLLM, acme: Tenant) -> None:
    backend = AdminBackend()
    assert backend.drift() == []
    token, team = sha(acme.key_plaintext), f"portal-team-{acme.team.pk}"
    dep = next(iter(fake.models))
    fake.teams[team]["models"] = ["acme/chat", "globex/chat"]
    fake.keys[token]["max_budget"] = 999.0
    fake.models[dep]["model_info"]["portal_fingerprint"] = "edited-by-hand"
    fake.models["portal-dep-999999"] = {"model_name": "acme/old", "litellm_params": {"model": "openai/x"},
                                        "model_info": {"id": "portal-dep-999999", "org": acme.org.pk}}
    fake.teams["portal-team-999999"] = {"team_id": "portal-team-999999", "models": []}
    fake.keys["f" * 64] = {"token": "f" * 64, "key_alias": "acme/key-999999.ffffffff",
                           "metadata": {"portal_key_id": 999999}}
    assert sorted(backend.drift()) == sorted([
        f"stale   team {team} (models)",
        "orphan  team portal-team-999999",
        f"stale   model {dep}",
        "orphan  model portal-dep-999999",
        f"stale   key {acme.key.pk} ({acme.key.key_prefix}...) (max_budget)",
        "orphan  key acme/key-999999.ffffffff",
    ])
    del fake.keys[token]
    assert f"missing key {acme.key.pk} ({acme.key.key_prefix}...)" in backend.drift()
    with pytest.raises(LiteLLMAdminError, match="not in LiteLLM; rotate it"):
        backend.push_key(acme.key.pk)  # a hash cannot be registered: only a rotation can fix it
    acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/rotate/"), format="json")
    backend.push_all()
    assert backend.drift() == []


def test_pull_spend_turns_spend_logs_into_usage_records_once(fake: FakeLiteLLM, acme: Tenant) -> None:
    now, token = timezone.now(), sha(acme.key_plaintext)
    log = {"api_key": token, "model": "gpt-4o-mini", "model_group": "acme/chat", "model_id": "portal-dep-1",
           "call_type": "acompletion", "startTime": (now - dt.timedelta(minutes=5)).isoformat()}
    fake.spend_logs = [
        log | {"request_id": "req-ok", "spend": 0.0021, "prompt_tokens": 10, "completion_tokens": 5,
               "status": "success", "request_duration_ms": 321, "metadata": {}},
        log | {"request_id": "req-err", "spend": 0, "status": "failure", "request_duration_ms": 12,
               "metadata": json.dumps({"error_information": {"error_code": "429", "error_class": "RateLimitError"}})},
        log | {"request_id": "req-foreign", "api_key": "e" * 64, "spend": 1, "status": "success"},
        log | {"request_id": "req-old", "spend": 1, "status": "success",
               "startTime": (now - dt.timedelta(days=2)).isoformat()},
    ]
    since = now - dt.timedelta(hours=1)
    assert pull_spend(since) == 2
    assert pull_spend(since) == 0 and UsageRecord.objects.count() == 2
    ok, err = UsageRecord.objects.get(request_id="req-ok"), UsageRecord.objects.get(request_id="req-err")
    assert (ok.key_id, ok.organization_id, ok.team_id, ok.project_id) == (acme.key.pk, acme.org.pk, acme.team.pk,
                                                                          acme.project.pk)
    assert (ok.route, ok.model_group, ok.deployment, ok.provider_model) == ("chat", "acme/chat", "portal-dep-1",
                                                                            "gpt-4o-mini")
    assert (ok.prompt_tokens, ok.completion_tokens, float(ok.cost), ok.latency_ms) == (10, 5, 0.0021, 321.0)
    assert (ok.status, ok.owner_email) == ("success", "member@acme.test")
    assert (err.status, err.status_code, err.error_class) == ("error", 429, "RateLimitError")
    daily = UsageDaily.objects.get(key_id=acme.key.pk)
    assert (daily.requests, daily.errors, daily.prompt_tokens) == (2, 1, 10)
    params = fake.calls[-1].params
    assert params["sort_order"] == "asc" and params["start_date"] == since.strftime("%Y-%m-%d %H:%M:%S")


def test_pull_spend_pages_through_and_knows_rotated_out_secrets(fake: FakeLiteLLM, acme: Tenant,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm_admin, "SPEND_PAGE_SIZE", 2)
    old = sha(acme.key_plaintext)
    acme.client("owner").post(acme.url(f"keys/{acme.key.pk}/rotate/"), {"grace_period_seconds": 60}, format="json")
    start = timezone.now() - dt.timedelta(minutes=10)
    fake.spend_logs = [{"request_id": f"r{i}", "api_key": old, "model_group": "acme/chat", "spend": 0.5,
                        "status": "success", "startTime": (start + dt.timedelta(seconds=i)).isoformat()}
                       for i in range(5)]
    assert pull_spend(start - dt.timedelta(minutes=1)) == 5
    assert [c.params["page"] for c in fake.calls if c.path == "/spend/logs/v2"] == ["1", "2", "3"]
    assert set(UsageRecord.objects.values_list("key_id", flat=True)) == {acme.key.pk}


def test_two_organizations_with_a_route_of_the_same_name_get_two_model_groups(fake: FakeLiteLLM, acme: Tenant,
                                                                              globex: Tenant) -> None:
    AdminBackend().push_all()
    assert sorted(m["model_name"] for m in fake.models.values()) == ["acme/chat", "globex/chat"]
    assert len({m["model_info"]["id"] for m in fake.models.values()}) == 2
    assert fake.teams[f"portal-team-{acme.team.pk}"]["models"] == ["acme/chat"]
    assert fake.teams[f"portal-team-{globex.team.pk}"]["models"] == ["globex/chat"]
    assert fake.keys[sha(globex.key_plaintext)]["models"] == ["globex/chat"]
    globex_model = next(m for m in fake.models.values() if m["model_name"] == "globex/chat")
    assert globex_model["litellm_params"]["mock_response"] == "hello from globex"


def test_a_deployment_update_patches_and_a_dropped_parameter_recreates(fake: FakeLiteLLM, acme: Tenant) -> None:
    admin, dep = acme.client("admin"), f"portal-dep-{acme.route.deployments.get().pk}"
    before = len(fake.calls)
    AdminBackend().push_routes(acme.org.pk)  # unchanged: no model write at all
    assert not {"/model/new", "/model/delete"} & set(fake.paths(since=before)) and not fake.paths("PATCH")
    admin.patch(acme.url(f"routes/{acme.route.pk}/"), {"timeout_seconds": 9}, format="json")
    assert fake.paths("PATCH") == [f"/model/{dep}/update"] and fake.models[dep]["litellm_params"]["timeout"] == 9
    before = len(fake.calls)
    admin.patch(acme.url(f"routes/{acme.route.pk}/"), {"timeout_seconds": None}, format="json")
    assert "timeout" not in fake.models[dep]["litellm_params"]  # LiteLLM cannot drop one: deleted and re-added
    assert [p for p in fake.paths(since=before) if p.startswith("/model/")] == ["/model/delete", "/model/new"]


def test_a_client_retries_429_and_5xx_but_not_4xx(fake: FakeLiteLLM) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(502), httpx.Response(200,
                                                                                                   json={"ok": 1})])
    sleeps: list[float] = []
    client = AdminClient(transport=httpx.MockTransport(lambda r: next(answers)), sleep=sleeps.append)
    assert client.get("/team/list") == {"ok": 1} and sleeps == [2.0, 1.0]
    client = AdminClient(transport=httpx.MockTransport(lambda r: FakeLiteLLM.error(400, "Invalid key sk-abcdef12")),
                         sleep=sleeps.append)
    with pytest.raises(LiteLLMAdminError) as caught:
        client.post("/key/update", {"key": "x"})
    assert caught.value.permanent and len(sleeps) == 2 and "sk-abcdef12" not in str(caught.value)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = AdminClient(transport=httpx.MockTransport(unreachable), sleep=sleeps.append)
    with pytest.raises(LiteLLMAdminError, match="unreachable") as caught:
        client.get("/team/list")
    assert not caught.value.permanent


def test_the_admin_tasks_do_nothing_in_managed_mode(settings: Any, db: Any) -> None:
    settings.GATEWAY_MODE = "managed"
    assert tasks_admin.sync_pull_spend() == 0 and tasks_admin.sync_expire_grace() == 0
    assert tasks_admin.sync_pull_spend.name == "gateway.tasks.sync_pull_spend"
    assert tasks_admin.sync_expire_grace.name == "gateway.tasks.sync_expire_grace"
