"""`manage.py doctor` against the real stack (PostgreSQL, Redis, two LiteLLM proxies with the plugin, a
Celery worker, a real beat, the Langfuse stand-in): healthy it exits 0 with a PASS line per check;
with Redis stopped, with no worker for a queue, with beat gone, with drift or a project's Langfuse
keys wrong, the line says FAIL with what to do and it exits 1."""

from __future__ import annotations

import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from gateway.plugin import contract
from portal.ops import beat
from tests.e2e.conftest import Stack
from tests.e2e.helpers import until
from tests.e2e.procs import LOGS, PYTHON, ROOT, Proc, Worker, wait_for
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def doctor(stack: Stack, *args: str, **env: str) -> tuple[int, str]:
    environ = {**stack.env, "GATEWAY_URLS": ",".join(gw.url for gw in stack.gateways), **env}
    done = subprocess.run([PYTHON, "manage.py", "doctor", "--timeout", "3", *args], capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode, done.stdout


def doctor_here(stack: Stack, settings: Any, *args: str) -> tuple[int, str, str]:
    """The command in this process (no interpreter to start): exit code, stdout, stderr."""
    settings.GATEWAY_URLS = [gw.url for gw in stack.gateways]
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("doctor", "--timeout", "3", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def line(out: str, name: str) -> str:
    found = [x for x in out.splitlines() if x[6:].startswith(f"{name} ") or x[6:].startswith(f"{name}:")]
    assert found, f"no line for {name} in:\n{out}"
    return found[0]


def hint(out: str, name: str) -> str:
    lines = out.splitlines()
    at = lines.index(line(out, name))
    return lines[at + 1] if at + 1 < len(lines) and lines[at + 1].strip().startswith("->") else ""


@pytest.fixture(scope="module")
def beat_proc(e2e_stack: Stack) -> Iterator[Proc]:
    """A real beat with the portal's scheduler (django-celery-beat's, writing the heartbeat)."""
    proc = Proc("beat-doctor", [PYTHON, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                                "--scheduler", "portal.ops.beat:HeartbeatScheduler",
                                "-s", str(LOGS / "beat-doctor-schedule")], e2e_stack.env).start()
    yield proc
    proc.stop()


def beat_alive(stack: Stack, proc: Proc) -> None:
    wait_for(lambda: stack.client().exists(beat.HEARTBEAT_KEY), 60, "beat's heartbeat", proc.p)


def connect_langfuse(stack: Stack, t: Tenant, secret: str = "") -> None:
    unique = uuid.uuid4().hex[:8]
    public, right = f"pk-lf-doc-{unique}", f"sk-lf-doc-{unique}"
    stack.langfuse.add_project(f"lf-doc-{unique}", "doctor", public, right)
    response = t.client("owner").put(t.url(f"projects/{t.project.pk}/langfuse/"), {
        "host": stack.langfuse.url, "public_key": public, "secret_key": right}, format="json")
    assert response.status_code == 201, response.content
    if secret:  # the keys were right when saved, then the stored secret no longer is
        from evals.models import LangfuseConnection

        conn = LangfuseConnection.objects.get(project=t.project)
        conn.set_secret_key(secret)
        conn.save()


def test_healthy_every_check_passes_and_it_exits_0(stack: Stack, acme: Tenant, beat_proc: Proc) -> None:
    connect_langfuse(stack, acme)
    beat_alive(stack, beat_proc)
    code, out = doctor(stack)
    assert code == 0, out
    names = ["database", "redis", "workers:sync", "workers:usage", "workers:evals", "beat", "drift",
             f"langfuse:acme/{acme.project.pk}", "clock"]
    for name in names:
        assert line(out, name).startswith("PASS"), out
    gateway_lines = [x for x in out.splitlines() if x[6:].startswith("gateway:")]
    assert len(gateway_lines) == 2 and all(x.startswith("PASS") for x in gateway_lines), out
    assert f"contract 1-{contract.CONTRACT_VERSION}, Redis has {contract.CONTRACT_VERSION}" in gateway_lines[0]
    assert "FAIL" not in out and out.strip().endswith("0 failed")
    code, out = doctor(stack, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and {c["name"] for c in report["checks"]} >= set(names)


def test_with_redis_stopped_the_redis_lines_fail_with_what_to_do(stack: Stack, acme: Tenant) -> None:
    stack.redis.stop()
    try:
        code, out = doctor(stack)
    finally:
        stack.redis.start()
    assert code == 1, out
    assert line(out, "database").startswith("PASS")
    assert line(out, "redis").startswith("FAIL") and "ConnectionError" in line(out, "redis")
    assert "start Redis, or fix REDIS_URL" in hint(out, "redis")
    for name in ("workers:sync", "workers:usage", "workers:evals"):
        assert line(out, name).startswith("FAIL") and "broker cannot be reached" in line(out, name), out
    assert line(out, "beat").startswith("FAIL") and line(out, "drift").startswith("FAIL")
    gateway_lines = [x for x in out.splitlines() if x[6:].startswith("gateway:")]
    assert gateway_lines and all(x.startswith("FAIL") and "redis_unavailable" in x for x in gateway_lines), out


def test_a_queue_without_a_worker_fails_its_line(stack: Stack) -> None:
    broker = stack.redis.url.rsplit("/", 1)[0] + "/3"  # a broker of its own: only this worker answers there
    env = {**stack.env, "CELERY_BROKER_URL": broker}
    worker = Worker(env, "doctor-two-queues")
    worker.argv[worker.argv.index("-Q") + 1] = "sync,evals"
    log = LOGS / "worker-doctor-two-queues.log"
    seen = log.stat().st_size if log.exists() else 0  # the log is appended to, run after run
    worker.start()
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace")[seen:], 120, "celery worker", worker.p)
        code, out = doctor(stack, "--only", "workers", "--timeout", "5", CELERY_BROKER_URL=broker)
    finally:
        worker.stop()
    assert code == 1, out
    assert line(out, "workers:sync").startswith("PASS") and line(out, "workers:evals").startswith("PASS")
    assert line(out, "workers:usage").startswith("FAIL") and "no worker consumes the 'usage' queue" in out
    assert "celery -A portal worker -Q usage" in hint(out, "workers:usage")


def test_beat_passes_while_its_heartbeat_is_fresh_and_fails_once_it_stops(stack: Stack, beat_proc: Proc,
                                                                          settings: Any) -> None:
    beat_alive(stack, beat_proc)
    assert doctor_here(stack, settings, "--only", "beat")[0] == 0  # compose's health check of the beat service
    record: dict[str, Any] = json.loads(stack.client().get(beat.HEARTBEAT_KEY) or "{}")
    assert record["pid"] == beat_proc.p.pid if beat_proc.p else False
    first = record["at"]
    until(lambda: json.loads(stack.client().get(beat.HEARTBEAT_KEY) or "{}").get("at", 0) > first, 30, 0.5)
    stack.client().set(beat.HEARTBEAT_KEY, json.dumps({**record, "at": time.time() - beat.MAX_AGE - 5}))
    beat_proc.stop()
    code, out, _ = doctor_here(stack, settings, "--only", "beat")
    assert code == 1 and line(out, "beat").startswith("FAIL") and "s ago" in out
    assert "start exactly one beat" in hint(out, "beat")
    stack.client().delete(beat.HEARTBEAT_KEY)
    code, out, _ = doctor_here(stack, settings, "--only", "beat")
    assert code == 1 and "no heartbeat in Redis" in out


def test_drift_and_wrong_langfuse_keys_fail_their_lines(stack: Stack, acme: Tenant, settings: Any) -> None:
    connect_langfuse(stack, acme, secret="sk-lf-rotated")
    stack.client().delete(contract.key_doc(acme.key.pk))
    code, out, _ = doctor_here(stack, settings, "--only", "drift,langfuse")
    assert code == 1, out
    assert line(out, "drift").startswith("FAIL") and f"missing {contract.key_doc(acme.key.pk)}" in out
    assert "gateway_sync" in hint(out, "drift")
    assert line(out, f"langfuse:acme/{acme.project.pk}").startswith("FAIL"), out
    assert "sk-lf" not in out  # no secret in the output


def test_an_unknown_check_name_is_one_line_and_exit_2(stack: Stack, settings: Any) -> None:
    code, out, err = doctor_here(stack, settings, "--only", "nonsense")
    assert code == 2 and "unknown check nonsense" in err and out == ""
