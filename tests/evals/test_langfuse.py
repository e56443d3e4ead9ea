"""Connecting projects to Langfuse (checked on save, or created with an
entitled organization key) and the Langfuse client's retries, against the
Langfuse stand-in."""

from __future__ import annotations

import time

import pytest

from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import LangfuseConnection
from portal.models import AuditLogEntry
from tests.factories import Tenant
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY

pytestmark = pytest.mark.django_db


def url(t: Tenant, path: str = "langfuse/") -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


def test_connecting_checks_the_keys_and_never_shows_the_secret(acme: Tenant,
                                                                 langfuse_standin: LangfuseStandin) -> None:
    body = {"host": langfuse_standin.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY}
    assert acme.client("member").put(url(acme), body, format="json").status_code == 403
    created = acme.client("team_admin").put(url(acme), body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["langfuse_project_name"] == "Project 1" and "secret_key" not in created.json()
    conn = LangfuseConnection.objects.get(project=acme.project)
    assert SECRET_KEY not in conn.secret_encrypted and conn.secret_key() == SECRET_KEY
    entry = AuditLogEntry.objects.get(action="langfuse.create")
    assert entry.after["secret_key"] == "********"
    # an update may leave the secret out: the stored one is kept and checked again
    again = acme.client("owner").put(url(acme), {"host": langfuse_standin.url, "public_key": PUBLIC_KEY},
                                     format="json")
    assert again.status_code == 200
    assert acme.client("viewer").get(url(acme)).json()["public_key"] == PUBLIC_KEY


def test_wrong_keys_and_unknown_hosts_are_refused(acme: Tenant, globex: Tenant,
                                                  langfuse_standin: LangfuseStandin) -> None:
    wrong = acme.client("owner").put(url(acme), {"host": langfuse_standin.url, "public_key": PUBLIC_KEY,
                                                 "secret_key": "nope"}, format="json")
    assert wrong.status_code == 400 and "rejected the keys" in wrong.json()["secret_key"][0]
    assert not LangfuseConnection.objects.exists()
    assert globex.client("owner").get(url(acme)).status_code == 404


def test_an_entitled_organization_key_creates_the_langfuse_project(acme: Tenant,
                                                                   langfuse_standin: LangfuseStandin) -> None:
    refused = acme.client("team_admin").post(url(acme, "langfuse/provision/"))
    assert refused.status_code == 400 and "no Langfuse organization key" in refused.json()["langfuse"][0]
    langfuse_standin.set_org_key("pk-lf-org", "sk-lf-org", entitled=False)
    body = {"host": langfuse_standin.url, "public_key": "pk-lf-org", "secret_key": "sk-lf-org"}
    not_entitled = acme.client("admin").put(acme.url("langfuse/"), body, format="json")
    assert not_entitled.status_code == 400 and "enterprise entitlement" in not_entitled.json()["public_key"][0]
    assert acme.client("team_admin").put(acme.url("langfuse/"), body, format="json").status_code == 403
    langfuse_standin.set_org_key("pk-lf-org", "sk-lf-org", entitled=True)
    saved = acme.client("admin").put(acme.url("langfuse/"), body, format="json")
    assert saved.status_code == 200 and "secret_key" not in saved.json()
    created = acme.client("team_admin").post(url(acme, "langfuse/provision/"))
    assert created.status_code == 201, created.content
    assert created.json()["langfuse_project_name"] == f"acme-{acme.project.name}"
    assert acme.client("team_admin").post(url(acme, "langfuse/provision/")).status_code == 201  # same project reused
    names = [p.name for p in langfuse_standin.projects.values()]
    assert names.count(f"acme-{acme.project.name}") == 1
    assert langfuse_standin.violations == []


def test_the_client_retries_429_and_5xx_honouring_retry_after(langfuse_standin: LangfuseStandin) -> None:
    client = LangfuseClient(langfuse_standin.url, PUBLIC_KEY, SECRET_KEY, backoff=0.05, timeout=2)
    langfuse_standin.inject("GET", "/api/public/projects$", status=429, times=2, retry_after=0.3)
    started = time.monotonic()
    assert client.check()["project"]["name"] == "Project 1"
    assert client.retries == 2 and time.monotonic() - started >= 0.6
    langfuse_standin.inject("GET", "/api/public/projects$", status=503, times=50, retry_after=None)
    with pytest.raises(LangfuseError) as exc:
        client.check()
    assert exc.value.status == 503 and not exc.value.permanent
    langfuse_standin.clear_faults()
    langfuse_standin.inject("GET", "/api/public/projects$", status=None, times=1, delay=3.0)
    assert client.check()["project"]["name"] == "Project 1"  # the slow answer timed out; the retry did not
    with pytest.raises(LangfuseError) as bad:
        LangfuseClient(langfuse_standin.url, PUBLIC_KEY, "wrong").check()
    assert bad.value.permanent and bad.value.status == 401


@pytest.mark.parametrize("version,path", [(4, "/api/public/v2/observations"), (3, "/api/public/observations")])
def test_the_api_generation_follows_the_servers_version(version: int, path: str) -> None:
    with LangfuseStandin(version=version) as server:
        server.add_project("p", "P", "pk-lf-v", "sk-lf-v")
        trace_id = server.seed_traces("p", 3)[0]
        client = LangfuseClient(server.url, "pk-lf-v", "sk-lf-v")
        assert client.server().api == f"v{version}"
        assert [o["traceId"] for o in client.observations(trace_id=trace_id)] == [trace_id]
        assert any(r["path"] == path for r in server.requests)
        assert len(list(client.traces(limit=2))) == 3 and server.violations == []
