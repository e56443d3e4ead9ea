"""Where the tenants' secrets live outside the database: nowhere in clear.

Provider secrets and Langfuse secret keys reach the proxies sealed (Redis, where an
append-only file writes everything to disk, holds no plaintext secret); the proxies'
environment and rendered config hold only their own settings; the plugin unseals in
memory, so a sealed deployment still works, and a proxy with the wrong sealing key
answers a clear error for the deployments it cannot unseal, without crashing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from evals.models import LangfuseConnection
from gateway.backends.managed import ManagedBackend
from gateway.models import ProviderCredential
from gateway.services import routes
from portal import crypto
from portal.access import system_actor
from tests.e2e.helpers import chat, issue_key, status_of
from tests.e2e.procs import LOGS, Gateway
from tests.e2e.stack import Stack
from tests.factories import Tenant
from tests.security.test_secret_references import Recorder, recorder  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROVIDER_SECRET = "sk-acme-sealed-provider-secret-1234"
LANGFUSE_SECRET = "sk-lf-acme-sealed-langfuse-secret-5678"


@dataclass
class Secrets:
    tenant: Tenant
    key: str
    langfuse_project: str
    plaintexts: list[str]


@pytest.fixture
def secrets(stack: Stack, live_acme: Tenant, recorder: Recorder) -> Secrets:  # noqa: F811
    """acme with a route on a credential whose host is the recorder, a route on its
    OpenAI credential, and a Langfuse connection: every kind of secret the gateway needs."""
    cred = ProviderCredential.objects.create(
        organization=live_acme.org, name="acme-selfhosted", provider="openai_compatible",
        settings={"api_base": recorder.url}, secrets_encrypted=crypto.encrypt_json({"api_key": PROVIDER_SECRET}))
    system = system_actor(live_acme.org, "tests")
    routes.route_create(actor=system, data={"name": "sealed", "deployments": [{"credential": cred, "model": "m"}]})
    routes.route_create(actor=system, data={"name": "gpt", "deployments": [
        {"credential": live_acme.credential, "model": "gpt-4o-mini"}]})
    lf_project, public = f"lf-acme-sealed-{uuid.uuid4().hex[:8]}", f"pk-lf-acme-{uuid.uuid4().hex[:8]}"
    stack.langfuse.add_project(lf_project, "acme sealed", public, LANGFUSE_SECRET)
    conn = LangfuseConnection(project=live_acme.project, host=stack.langfuse.url, public_key=public)
    conn.set_secret_key(LANGFUSE_SECRET)
    conn.save()
    backend = ManagedBackend()
    backend.push_routes(live_acme.org.pk)
    backend.push_project(live_acme.project.pk)
    time.sleep(0.3)
    return Secrets(live_acme, issue_key(live_acme)["key"], lf_project,
                   [PROVIDER_SECRET, "sk-provider-secret-value", LANGFUSE_SECRET])


def redis_dump(client: redis.Redis) -> Iterator[tuple[str, str]]:
    """(key, everything stored under it) for every key, whatever its type."""
    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        if kind == "string":
            value: object = client.get(name)
        elif kind == "hash":
            value = client.hgetall(name)
        elif kind == "list":
            value = client.lrange(name, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(name))
        elif kind == "zset":
            value = client.zrange(name, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(name)
        else:
            value = kind
        yield name, f"{name} {json.dumps(value, default=str)}"


def environ(gateway: Gateway) -> str:
    assert gateway.p is not None
    return Path(f"/proc/{gateway.p.pid}/environ").read_bytes().decode(errors="replace")


def test_redis_holds_no_plaintext_secret_and_a_sealed_deployment_still_works(
        stack: Stack, secrets: Secrets, recorder: Recorder) -> None:  # noqa: F811
    for gw in stack.gateways:
        assert chat(gw.url, secrets.key, "sealed").choices[0].message.content == "recorded"
    # the plugin unsealed the secret in memory: the tenant's host got its own key
    assert [h.get("authorization") or h.get("Authorization") for h in recorder.headers] == \
        [f"Bearer {PROVIDER_SECRET}"] * 2
    # the project's traces still reach its Langfuse with the unsealed secret
    lf = stack.langfuse
    assert lf.wait_for(lambda: len(lf.project(secrets.langfuse_project).traces) >= 2, timeout=20)
    time.sleep(0.5)  # the usage entries on the stream
    found = [(db, name, secret[:12]) for db in redis_databases(stack)
             for name, text in redis_dump(redis.Redis(port=stack.redis.port, db=db, decode_responses=True))
             for secret in secrets.plaintexts if secret in text]
    assert found == [], f"plaintext secrets in Redis: {found}"


def redis_databases(stack: Stack) -> list[int]:
    """Every database of the stack's Redis that holds keys: the gateway's state, Celery's broker."""
    keyspace = stack.client().info("keyspace")
    return sorted(int(name[2:]) for name in keyspace if name.startswith("db"))


def test_a_proxy_started_by_the_portal_holds_no_tenant_secret(stack: Stack, secrets: Secrets, tmp_path: Path,
                                                              recorder: Recorder) -> None:  # noqa: F811
    """A proxy started now, when the tenant's deployments exist."""
    gw = Gateway(stack.env, tmp_path).start()
    try:
        gw.wait_ready()
        text = environ(gw)
        leaked = [s[:12] for s in secrets.plaintexts if s in text]
        assert leaked == [], f"tenant secrets in the proxy's environment: {leaked}"
        assert "PORTAL_SECRET_" not in text
        config = (tmp_path / "litellm-config.yaml").read_text()
        assert all(s not in config for s in secrets.plaintexts)
        assert chat(gw.url, secrets.key, "sealed").choices[0].message.content == "recorded"
        assert recorder.headers[-1].get("authorization") == f"Bearer {PROVIDER_SECRET}"
    finally:
        gw.stop()


def test_a_proxy_with_the_wrong_sealing_key_answers_a_clear_error_and_keeps_serving(
        stack: Stack, secrets: Secrets, tmp_path: Path, recorder: Recorder) -> None:  # noqa: F811
    gw = Gateway({**stack.env, "GATEWAY_SEALING_KEY": "not-the-portals-sealing-key-0123456789"}, tmp_path).start()
    try:
        gw.wait_ready()
        code, message = status_of(lambda: chat(gw.url, secrets.key, "sealed"))
        print(code, message)
        assert code == 503 and "cannot be used" in message and "GATEWAY_SEALING_KEY" in message
        assert PROVIDER_SECRET not in message
        assert recorder.headers == []  # nothing was sent anywhere
        # routes without secrets still answer, and the proxy is still up
        assert chat(gw.url, secrets.key, "chat").choices[0].message.content == "hello from acme"
        log = (LOGS / f"{gw.name}.log").read_text(errors="replace")
        assert "GATEWAY_SEALING_KEY" in log and PROVIDER_SECRET not in log
    finally:
        gw.stop()
