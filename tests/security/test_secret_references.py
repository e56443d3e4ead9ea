"""A hostile org admin tries to make LiteLLM resolve a secret reference
(`os.environ/NAME` and the other prefixes the installed LiteLLM resolves) in a
value it supplies: a route's deployment, a credential's settings and secrets.

Through the API every such value is refused with a 400 naming the field. On the
real proxies, a value planted in the database by hand (an old row) or in the
gateway's Redis never makes the proxy answer its environment, nor send it to a
host of the tenant's choosing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.backends.managed import ManagedBackend
from gateway.models import ModelRoute, ProviderCredential, RouteDeployment
from gateway.plugin import contract
from gateway.services import routes
from portal import crypto
from portal.access import system_actor
from tests.e2e.helpers import chat, issue_key, status_of
from tests.e2e.stack import Stack
from tests.factories import Tenant

REFERENCES = [
    "os.environ/LITELLM_MASTER_KEY",
    "os.environ/PATH",
    "OS.ENVIRON/LITELLM_MASTER_KEY",
    "  os.environ/LITELLM_MASTER_KEY",
    "\tos.environ/PATH",
    "oidc/env/LITELLM_MASTER_KEY",
    "oidc/file//proc/self/environ",
    "hashicorp_vault/secret/data/db",
    "aws_secret_manager/prod/db",
    "google_secret_manager/projects/p/secrets/s",
    "aws_kms/AQICAHh",
    "Bearer os.environ/LITELLM_MASTER_KEY",
]


def route_with(params: dict[str, Any], **deployment: Any) -> dict[str, Any]:
    return {"name": "leak", "deployments": [{"model": "m", "litellm_params": params} | deployment]}


def errors(response: Any) -> str:
    return json.dumps(response.json())


# --- the API refuses every reference, naming the field -----------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("reference", REFERENCES)
def test_a_route_deployment_param_that_is_a_secret_reference_is_refused(acme: Tenant, reference: str) -> None:
    response = acme.client("admin").post(acme.url("routes/"), route_with({"mock_response": reference}), format="json")
    assert response.status_code == 400, response.content
    assert "mock_response" in errors(response) and "secret reference" in errors(response)
    assert "LITELLM_MASTER_KEY" not in errors(response)  # the value is not echoed
    assert not ModelRoute.objects.filter(organization=acme.org, name="leak").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("params,field", [
    ({"mock_response": "hi", "extra_headers": {"X-Leak": "os.environ/LITELLM_MASTER_KEY"}}, "extra_headers.X-Leak"),
    ({"mock_response": "hi", "extra_headers": {"os.environ/LITELLM_MASTER_KEY": "x"}}, "extra_headers"),
    ({"mock_response": "hi", "extra_headers": {"X-Deep": {"a": ["os.environ/PATH"]}}}, "extra_headers"),
    ({"mock_response": "hi", "region_name": "os.environ/AWS_REGION"}, "region_name"),
    ({"mock_response": "hi", "api_version": "oidc/env/LITELLM_MASTER_KEY"}, "api_version"),
])
def test_nested_and_other_deployment_params_are_checked(acme: Tenant, params: dict[str, Any], field: str) -> None:
    response = acme.client("admin").post(acme.url("routes/"), route_with(params), format="json")
    assert response.status_code == 400, response.content
    assert field in errors(response), errors(response)


@pytest.mark.django_db
def test_a_deployment_model_name_that_is_a_secret_reference_is_refused(acme: Tenant) -> None:
    response = acme.client("admin").post(acme.url("routes/"), {
        "name": "leak", "deployments": [{"credential": acme.credential.pk, "model": "os.environ/LITELLM_MASTER_KEY"}]},
        format="json")
    assert response.status_code == 400, response.content
    assert "model" in errors(response) and "secret reference" in errors(response)


@pytest.mark.django_db
def test_a_route_name_that_is_a_secret_reference_is_refused(acme: Tenant) -> None:
    response = acme.client("admin").post(acme.url("routes/"), {
        "name": "os.environ/LITELLM_MASTER_KEY", "deployments": [{"model": "m", "litellm_params": {"mock_response": "x"}}]},
        format="json")
    assert response.status_code == 400, response.content
    assert "name" in errors(response)


@pytest.mark.django_db
@pytest.mark.parametrize("body,field", [
    ({"provider": "openai", "secrets": {"api_key": "os.environ/LITELLM_MASTER_KEY"}}, "api_key"),
    ({"provider": "anthropic", "secrets": {"api_key": " oidc/env/LITELLM_MASTER_KEY"}}, "api_key"),
    ({"provider": "bedrock", "settings": {"aws_region_name": "eu-west-1"},
      "secrets": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}},
     "aws_secret_access_key"),
    ({"provider": "azure", "settings": {"api_base": "https://x.openai.azure.com", "api_version": "os.environ/V"},
      "secrets": {"api_key": "k"}}, "api_version"),
    ({"provider": "openai", "settings": {"organization": "os.environ/OPENAI_ORGANIZATION"},
      "secrets": {"api_key": "k"}}, "organization"),
    ({"provider": "vertex_ai", "settings": {"vertex_project": "os.environ/GOOGLE_PROJECT", "vertex_location": "eu"},
      "secrets": {"vertex_credentials": "{\"type\": \"service_account\"}"}}, "vertex_project"),
])
def test_credential_settings_and_secrets_that_are_secret_references_are_refused(
        acme: Tenant, body: dict[str, Any], field: str) -> None:
    response = acme.client("admin").post(acme.url("credentials/"), {"name": "leak"} | body, format="json")
    assert response.status_code == 400, response.content
    assert field in errors(response) and "secret reference" in errors(response), errors(response)
    assert not ProviderCredential.objects.filter(name="leak").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("credentials", [
    "/proc/self/environ",  # LiteLLM reads a vertex_credentials string that names a file
    "/etc/hostname",
    json.dumps({"type": "external_account", "credential_source": {"file": "/proc/self/environ"}}),
    json.dumps({"type": "external_account", "credential_source": {"url": "http://169.254.169.254/latest"}}),
    json.dumps({"type": "impersonated_service_account", "source_credentials": {}}),
])
def test_vertex_credentials_must_be_the_credentials_themselves(acme: Tenant, credentials: str) -> None:
    response = acme.client("admin").post(acme.url("credentials/"), {
        "name": "leak", "provider": "vertex_ai", "settings": {"vertex_project": "p", "vertex_location": "eu"},
        "secrets": {"vertex_credentials": credentials}}, format="json")
    assert response.status_code == 400, response.content
    assert "vertex_credentials" in errors(response)


@pytest.mark.django_db
def test_a_credential_update_with_a_secret_reference_is_refused(acme: Tenant) -> None:
    response = acme.client("admin").patch(acme.url(f"credentials/{acme.credential.pk}/"), {
        "secrets": {"api_key": "os.environ/LITELLM_MASTER_KEY"}}, format="json")
    assert response.status_code == 400, response.content
    assert "api_key" in errors(response)
    assert crypto.decrypt_json(ProviderCredential.objects.get(pk=acme.credential.pk).secrets_encrypted)["api_key"] \
        == "sk-provider-secret-value"


@pytest.mark.django_db
def test_ordinary_values_that_mention_the_words_are_accepted(acme: Tenant) -> None:
    response = acme.client("admin").post(acme.url("routes/"), route_with(
        {"mock_response": "Set OPENAI_API_KEY in your environment, then call os.environ.get(...)",
         "extra_headers": {"X-Team": "platform"}}), format="json")
    assert response.status_code == 201, response.content


# --- the real proxies never answer a reference, even one planted by hand ------------------

def proxy_environ(stack: Stack) -> dict[str, str]:
    """The first proxy's environment, as the operating system holds it."""
    proc = stack.gateways[0].p
    assert proc is not None
    with open(f"/proc/{proc.pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def plant_route(t: Tenant, name: str, params: dict[str, Any], credential: ProviderCredential | None = None) -> None:
    """A route written as an old portal (or a hand edit) might have left it: the row is
    created valid, then its parameters are replaced in the database, bypassing validation."""
    route = routes.route_create(actor=system_actor(t.org, "tests"), data={
        "name": name, "deployments": [{"credential": credential, "model": "gpt-4o-mini",
                                       "litellm_params": {"mock_response": "planted"} if credential is None else {}}]})
    RouteDeployment.objects.filter(route=route).update(litellm_params=params)
    ManagedBackend().push_routes(t.org.pk)


class Recorder:
    """A server of the tenant's choosing, which writes down what the proxy sends it."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                recorder.headers.append(dict(self.headers.items()))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "recorded"}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.server.shutdown()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_route_cannot_make_the_proxy_answer_its_environment(stack: Stack, live_acme: Tenant) -> None:
    env = proxy_environ(stack)
    secrets = {"the master key": env["LITELLM_MASTER_KEY"], "PATH": env["PATH"]}
    # an old row, planted in the database
    plant_route(live_acme, "planted", {"mock_response": "os.environ/LITELLM_MASTER_KEY"})
    plant_route(live_acme, "planted-path", {"mock_response": "os.environ/PATH"})
    key = issue_key(live_acme)["key"]
    for gw in stack.gateways:
        for route in ("planted", "planted-path"):
            code, message = answer(gw.url, key, route)
            print(gw.name, route, code, message[:200])
            leaked = [name for name, value in secrets.items() if value in message]
            assert not leaked, f"{route} answered {code} with {leaked}"
            assert code == 503 and "cannot be used" in message
    # through the API, such a route cannot be made
    response = live_acme.client("admin").post(live_acme.url("routes/"), route_with(
        {"mock_response": "os.environ/LITELLM_MASTER_KEY"}), format="json")
    assert response.status_code == 400, response.content
    # the tenant's other routes still work
    assert chat(stack.gateways[0].url, key, "chat").choices[0].message.content == "hello from acme"


def answer(gateway_url: str, key: str, route: str = "chat") -> tuple[int, str]:
    """(status, the answer's text or the error's message)."""
    out: list[str] = []
    code, message = status_of(lambda: out.append(chat(gateway_url, key, route).choices[0].message.content or ""))
    return code, out[0] if out else message


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_reference_planted_in_redis_is_not_resolved_by_the_plugin(stack: Stack, live_acme: Tenant) -> None:
    """Defence in depth: a models document with a reference in it (written by an old
    portal, or by anyone who can write to Redis) is not applied as it is."""
    env = proxy_environ(stack)
    key = issue_key(live_acme)["key"]
    chat(stack.gateways[0].url, key)
    client = stack.client()
    doc = json.loads(client.get(contract.MODELS))
    for entry in doc["model_list"]:
        if entry["model_name"] == "acme/chat":
            entry["litellm_params"]["mock_response"] = "os.environ/LITELLM_MASTER_KEY"
    doc["v"] = int(client.incr(contract.VERSION))
    client.set(contract.MODELS, json.dumps(doc))
    client.publish(contract.EVENTS, json.dumps({"type": "models", "id": 0, "v": doc["v"]}))
    import time

    time.sleep(1.0)
    for gw in stack.gateways:
        code, message = answer(gw.url, key)
        print(gw.name, code, message[:200])
        assert env["LITELLM_MASTER_KEY"] not in message, f"answered {code} with the master key"
        assert code == 503 and "cannot be used" in message


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_credential_cannot_send_the_proxys_secrets_to_a_host_of_the_tenants_choosing(
        stack: Stack, live_acme: Tenant, recorder: Recorder) -> None:
    master = proxy_environ(stack)["LITELLM_MASTER_KEY"]
    # planted by hand, as an old row would be
    cred = ProviderCredential.objects.create(
        organization=live_acme.org, name="exfil", provider="openai_compatible", settings={"api_base": recorder.url},
        secrets_encrypted=crypto.encrypt_json({"api_key": "os.environ/LITELLM_MASTER_KEY"}))
    plant_route(live_acme, "exfil", {}, credential=cred)
    plant_route(live_acme, "exfil-header", {"extra_headers": {"X-Leak": "os.environ/LITELLM_MASTER_KEY"}},
                credential=cred)
    key = issue_key(live_acme)["key"]
    for route in ("exfil", "exfil-header"):
        code, message = answer(stack.gateways[0].url, key, route)
        print(route, code, message[:200])
        assert master not in message
    sent = json.dumps(recorder.headers)
    print("the tenant's host received:", sent.replace(master, "<THE MASTER KEY>")[:600])
    assert master not in sent, "the master key reached the tenant's host"
    # through the API, such a credential cannot be made
    response = live_acme.client("admin").post(live_acme.url("credentials/"), {
        "name": "exfil2", "provider": "openai", "secrets": {"api_key": "os.environ/LITELLM_MASTER_KEY"}},
        format="json")
    assert response.status_code == 400, response.content
