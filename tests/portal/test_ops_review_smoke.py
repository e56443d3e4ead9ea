"""Reviewer R2 (issue 11, item 4), against the real stack: what `manage.py smoke` tells an operator when a step
fails. The Langfuse step fails at once with Langfuse's reason when waiting cannot help (R2-D1), and every call of
one run carries the one request id smoke prints, so the proxy's log lines of that run can be found (R2-D6)."""

from __future__ import annotations

import re
import subprocess

import pytest

from evals.models import LangfuseConnection
from tests.e2e.procs import LOGS, PYTHON, ROOT
from tests.e2e.stack import Stack
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def smoke(stack: Stack, *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", "smoke", "--org", "acme", "--route", "chat", *args],
                          capture_output=True, text=True, env=stack.env, cwd=ROOT, timeout=180)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.stdout


def test_langfuse_refusing_the_keys_fails_the_step_at_once_with_the_reason(stack: Stack, acme: Tenant) -> None:
    stack.langfuse.add_project("lf-r2", "r2", "pk-lf-r2", "sk-lf-r2")
    response = acme.client("owner").put(acme.url(f"projects/{acme.project.pk}/langfuse/"), {
        "host": stack.langfuse.url, "public_key": "pk-lf-r2", "secret_key": "sk-lf-r2"}, format="json")
    assert response.status_code == 201, response.content
    conn = LangfuseConnection.objects.get(project=acme.project)
    conn.set_secret_key("sk-lf-rotated")  # right when saved; then the stored secret no longer is
    conn.save()
    out = smoke(stack, "--gateway", stack.gateways[0].url)
    [line] = [x for x in out.splitlines() if x[6:].startswith("langfuse trace ")]
    assert line.startswith("FAIL") and "401" in line, out
    assert float(line.split()[3]) < 20, line  # not the 60 s wait for traces that cannot be read
    assert "sk-lf" not in out


def test_one_run_has_one_request_id_and_the_gateway_logs_it(stack: Stack, acme: Tenant) -> None:
    gateway = stack.gateways[0]
    out = smoke(stack, "--gateway", gateway.url)
    found = re.search(r"request id (smoke-[0-9a-f]{16})", out.splitlines()[0])
    assert found, out
    log = (LOGS / f"{gateway.name}.log").read_text(errors="replace")
    assert log.count(found.group(1)) >= 3, out  # the call, the streamed call and the revoked key's 401
