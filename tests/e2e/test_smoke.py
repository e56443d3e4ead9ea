"""`manage.py smoke` against the real stack (PostgreSQL, Redis, LiteLLM proxies with the plugin, the
Celery worker's usage consumer, the Langfuse stand-in): healthy it exits 0 after every step, its key
revoked and audited; against a stopped gateway it exits 1 and still revokes its key."""

from __future__ import annotations

import subprocess

import pytest

from gateway.models import KeyStatus, VirtualKey
from portal.models import AuditLogEntry
from tests.e2e.conftest import Stack
from tests.e2e.procs import PYTHON, ROOT, free_port
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STEPS = ("issue key", "call", "call (stream)", "usage recorded", "langfuse trace", "revoke key", "revoked key 401")


def smoke(stack: Stack, *args: str) -> tuple[int, str]:
    done = subprocess.run([PYTHON, "manage.py", "smoke", *args], capture_output=True, text=True, env=stack.env,
                          cwd=ROOT, timeout=180)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode, done.stdout


def step(out: str, name: str) -> str:
    found = [x for x in out.splitlines() if x[6:].startswith(f"{name} ")]
    assert found, f"no step {name} in:\n{out}"
    return found[0]


def smoke_keys(t: Tenant) -> list[VirtualKey]:
    return list(VirtualKey.objects.filter(organization=t.org, name__startswith="smoke: "))


def test_smoke_passes_every_step_with_traces_and_revokes_its_key(stack: Stack, acme: Tenant) -> None:
    stack.langfuse.add_project("lf-smoke", "smoke", "pk-lf-smoke", "sk-lf-smoke")
    response = acme.client("owner").put(acme.url(f"projects/{acme.project.pk}/langfuse/"), {
        "host": stack.langfuse.url, "public_key": "pk-lf-smoke", "secret_key": "sk-lf-smoke"}, format="json")
    assert response.status_code == 201, response.content
    code, out = smoke(stack, "--org", "acme", "--project", str(acme.project.pk), "--route", "chat",
                      "--gateway", stack.gateways[1].url)
    assert code == 0, out
    for name in STEPS:
        assert step(out, name).startswith("PASS"), out
    assert "'hello from acme'" in step(out, "call") and "chunk(s)" in step(out, "call (stream)")
    assert "2 records" in step(out, "usage recorded") and "2 traces" in step(out, "langfuse trace")
    [key] = smoke_keys(acme)
    assert key.status == KeyStatus.REVOKED and key.max_budget is not None and key.expires_at is not None
    assert [r.name for r in key.allowed_routes.all()] == ["chat"]
    audited = set(AuditLogEntry.objects.filter(organization=acme.org, target_id=str(key.pk))
                  .values_list("action", "actor_label"))
    assert {("key.create", "manage.py smoke"), ("key.revoke", "manage.py smoke")} <= audited, audited
    assert len(stack.langfuse.project("lf-smoke").traces) >= 2


def test_smoke_without_langfuse_skips_that_step(stack: Stack, acme: Tenant) -> None:
    code, out = smoke(stack, "--org", "acme")
    assert code == 0, out
    assert "no Langfuse connection: skipped" in step(out, "langfuse trace")


def test_smoke_against_a_stopped_gateway_fails_and_still_revokes_its_key(stack: Stack, acme: Tenant) -> None:
    code, out = smoke(stack, "--org", "acme", "--gateway", f"http://127.0.0.1:{free_port()}")
    assert code == 1, out
    assert step(out, "call").startswith("FAIL") and "cannot be reached" in step(out, "call")
    assert step(out, "revoke key").startswith("PASS")
    [key] = smoke_keys(acme)
    assert key.status == KeyStatus.REVOKED


def test_smoke_names_what_is_missing(stack: Stack, acme: Tenant) -> None:
    code, out = smoke(stack, "--org", "nope")
    assert code == 1 and "no organization 'nope'" in out and "--org" in out
    code, out = smoke(stack, "--org", "acme", "--route", "missing")
    assert code == 1 and "no active route missing" in out
    assert smoke_keys(acme) == []
