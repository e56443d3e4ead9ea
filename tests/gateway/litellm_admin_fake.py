"""A fake LiteLLM for the litellm-admin backend's tests, at the HTTP level.

LiteLLM with its own database cannot run here, so the fake is held to the
installed LiteLLM instead: every request must hit a route of the proxy's
route table, GET parameters must be ones the endpoint declares, and every
body must validate against the request model the endpoint itself declares
(from `litellm.proxy._types` / `litellm.types.router`), with unknown fields
refused (LiteLLM's models silently drop them).

The `fake` fixture selects the litellm-admin mode and registers its backend
with a client that talks to the fake (the registry is the only seam)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
from django.utils import timezone
from pydantic import BaseModel, ConfigDict

from gateway import backends
from gateway.backends import base
from gateway.backends.litellm_admin import AdminBackend, AdminClient
from gateway.models import SyncOutbox
from tests.factories import Tenant

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
def expected_models() -> dict[tuple[str, str], type[BaseModel]]:
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
    expected = expected_models().get((method, found.path))
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

    def backend() -> AdminBackend:
        return AdminBackend(AdminClient(transport=httpx.MockTransport(litellm.handle), sleep=litellm.sleeps.append))

    monkeypatch.setitem(base.registry, "litellm-admin", backend)
    yield litellm
    assert litellm.violations == []


def admin_backend() -> AdminBackend:
    """The backend the portal uses now (the fake's, under the `fake` fixture)."""
    return cast(AdminBackend, backends.backend())


def issue(t: Tenant, role: str = "owner", **body: Any) -> Any:
    payload = {"name": "ci key", "team": t.team.pk, "project": t.project.pk} | body
    return t.client(role).post(t.url("keys/"), payload, format="json")


def due_now() -> None:
    SyncOutbox.objects.filter(done_at=None).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))
