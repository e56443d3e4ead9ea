"""A project's traces reach its own Langfuse project (here the Langfuse
stand-in), with that project's keys and no other's."""

from __future__ import annotations

import pytest

from gateway.models import UsageRecord
from tests.e2e.conftest import Stack
from tests.e2e.helpers import chat, issue_key, until
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def connect(t: Tenant, stack: Stack, project_id: str, public: str, secret: str) -> None:
    stack.langfuse.add_project(project_id, f"{t.org.slug} traces", public, secret)
    response = t.client("owner").put(t.url(f"projects/{t.project.pk}/langfuse/"), {
        "host": stack.langfuse.url, "public_key": public, "secret_key": secret}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["server_version"].startswith("4")
    assert "secret_key" not in response.json()


def test_each_projects_traces_reach_only_its_own_langfuse_project(stack: Stack, acme: Tenant, globex: Tenant) -> None:
    connect(acme, stack, "lf-acme", "pk-lf-acme", "sk-lf-acme")
    connect(globex, stack, "lf-globex", "pk-lf-globex", "sk-lf-globex")
    a, g = issue_key(acme), issue_key(globex)
    for gw in stack.gateways:
        chat(gw.url, a["key"])
    chat(stack.gateways[0].url, g["key"])
    lf = stack.langfuse
    assert lf.wait_for(lambda: len(lf.project("lf-acme").traces) >= 2 and len(lf.project("lf-globex").traces) >= 1,
                       timeout=20)
    acme_text = repr(lf.project("lf-acme").observations)
    globex_text = repr(lf.project("lf-globex").observations)
    assert "hello from acme" in acme_text and "hello from globex" not in acme_text
    assert "hello from globex" in globex_text and "hello from acme" not in globex_text
    otel = [r for r in lf.requests if r["path"] == "/api/public/otel/v1/traces"
            and r["public_key"] in ("pk-lf-acme", "pk-lf-globex")]
    assert {r["public_key"] for r in otel} == {"pk-lf-acme", "pk-lf-globex"}
    assert {r["ingestion_version"] for r in otel} == {"4"}
    assert lf.violations == []
    # the portal's usage record links to the same trace
    until(lambda: UsageRecord.objects.filter(key_id=a["id"]).count() == 2, 3)
    trace_ids = set(UsageRecord.objects.filter(key_id=a["id"]).values_list("trace_id", flat=True))
    assert trace_ids <= set(lf.project("lf-acme").traces), (trace_ids, list(lf.project("lf-acme").traces)[:3])


def test_a_project_without_langfuse_sends_no_traces(stack: Stack, acme: Tenant) -> None:
    before = len(stack.langfuse.requests)
    chat(stack.gateways[0].url, issue_key(acme)["key"])
    until(lambda: UsageRecord.objects.filter(organization=acme.org).exists(), 3)
    assert [r for r in stack.langfuse.requests[before:] if "otel" in r["path"]] == []


def test_wrong_langfuse_keys_are_refused_with_a_clear_message(stack: Stack, acme: Tenant) -> None:
    stack.langfuse.add_project("lf-x", "x", "pk-lf-x", "sk-lf-x")
    response = acme.client("owner").put(acme.url(f"projects/{acme.project.pk}/langfuse/"), {
        "host": stack.langfuse.url, "public_key": "pk-lf-x", "secret_key": "wrong"}, format="json")
    assert response.status_code == 400
    assert "rejected the keys" in response.json()["secret_key"][0]
    response = acme.client("owner").put(acme.url(f"projects/{acme.project.pk}/langfuse/"), {
        "host": "http://127.0.0.1:9", "public_key": "pk", "secret_key": "sk"}, format="json")
    assert response.status_code == 400 and "cannot be reached" in response.json()["host"][0]
