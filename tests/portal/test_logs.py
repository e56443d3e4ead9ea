"""The request id and structured logs: a well-formed incoming `X-Request-ID` is kept (else one is made),
returned in the response, written on every log line of the request (JSON with LOG_FORMAT=json), sent to
the gateway on the portal's calls, and carried by the Celery tasks the request queues into the worker's
log lines. Real processes where it crosses one: gunicorn, a Celery worker, an HTTP server as the gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from evals.gateway_client import GatewayClient
from gateway.backends.litellm_admin.client import AdminClient
from portal.logs import bind_request_id
from tests.e2e.procs import LOGS, PYTHON, ROOT, Proc, RedisServer, free_port, portal_env, wait_for
from tests.fake_http import Answer, FakeServer

HEX32 = re.compile(r"[0-9a-f]{32}")
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "chat",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def test_a_well_formed_request_id_is_returned_as_given() -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a:01.x_y")
    assert response["X-Request-ID"] == "lb-7f3a:01.x_y"


@pytest.mark.parametrize("sent", ["", "has space", "new\nline", "x" * 129, "<script>", "é"])
def test_a_malformed_request_id_is_replaced_by_a_new_one(sent: str) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=sent)
    assert HEX32.fullmatch(response["X-Request-ID"]) and response["X-Request-ID"] != sent


def test_without_one_each_request_gets_its_own() -> None:
    client = Client()
    first, second = client.get("/healthz")["X-Request-ID"], client.get("/healthz")["X-Request-ID"]
    assert HEX32.fullmatch(first) and HEX32.fullmatch(second) and first != second


@pytest.fixture
def gateway_standin() -> Iterator[FakeServer]:
    server = FakeServer(lambda seen: Answer.json(COMPLETION)).start()
    yield server
    server.stop()


def test_calls_to_the_gateway_carry_the_request_id(gateway_standin: FakeServer, settings: Any) -> None:
    client = GatewayClient("sk-test", base_url=gateway_standin.url, max_retries=0)
    with bind_request_id("web-req-42"):
        client.chat("chat", [{"role": "user", "content": "hi"}])
    settings.LITELLM_MASTER_KEY = "sk-master"
    with bind_request_id("web-req-43"):
        AdminClient(base_url=gateway_standin.url).get("/model/info")
    client.chat("chat", [{"role": "user", "content": "hi"}])  # outside any request: an id of its own
    sent = [seen.headers.get("X-Request-ID") for seen in gateway_standin.seen]
    assert sent[:2] == ["web-req-42", "web-req-43"] and HEX32.fullmatch(sent[2] or "")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_gunicorn_writes_json_lines_with_the_request_id(tmp_path: Path) -> None:
    """A real gunicorn with LOG_FORMAT=json whose database and Redis are down: /readyz's warnings are JSON
    lines carrying the probe's request id, and the answer is 503 naming both."""
    port, dead = free_port(), free_port()
    env = portal_env(f"redis://127.0.0.1:{dead}/0", f"postgres://postgres@127.0.0.1:{dead}/nowhere",
                     LOG_FORMAT="json", PORTAL_ENV_FILE="none")
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        web = subprocess.Popen([PYTHON, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "gunicorn", web)
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"X-Request-ID": "probe-1234",
                                                                       "Host": "10.0.0.9"})
        assert response.status_code == 503
        assert response.json() == {"status": "fail", "checks": {"database": "fail", "redis": "fail"}}
        assert response.headers["X-Request-ID"] == "probe-1234"
        wait_for(lambda: len([r for r in json_lines(log.read_text()) if r.get("request_id") == "probe-1234"]) >= 2,
                 10, "log lines")
    finally:
        web.terminate()
        web.wait(timeout=20)
    lines = [r for r in json_lines(log.read_text()) if r.get("request_id") == "probe-1234"]
    # the probe's own lines, and Django's line for its 503 (written after the middleware: R1-A4)
    assert {r["logger"] for r in lines} == {"portal.health", "django.request"}
    assert all(r["level"] in ("WARNING", "ERROR") and r["time"] for r in lines)
    assert any("the database did not answer" in r["message"] for r in lines)
    assert any("Redis did not answer" in r["message"] for r in lines)


@pytest.mark.django_db(transaction=True)
def test_a_task_queued_during_a_request_logs_its_id_in_the_worker(tmp_path: Path) -> None:
    from django.conf import settings

    from gateway.tasks import sync_drain_outbox

    server = RedisServer(tmp_path).start()
    db = settings.DATABASES["default"]
    env = portal_env(server.url, f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
                     LOG_FORMAT="json", PORTAL_ENV_FILE="none")
    name = f"logs-{os.getpid()}"
    worker = Proc(f"worker-{name}", [PYTHON, "-m", "celery", "-A", "portal", "worker", "-Q", "sync", "-c", "1",
                                     "-n", f"{name}@%h", "--without-gossip", "--without-mingle"], env)
    log = LOGS / f"worker-{name}.log"
    log.unlink(missing_ok=True)
    worker.start()
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 90, "celery worker", worker.p)
        app = sync_drain_outbox.app
        with app.connection_for_write(server.url) as connection, bind_request_id("task-req-77"):
            sync_drain_outbox.apply_async(connection=connection)
        sync_drain_outbox.apply_async(connection=app.connection_for_write(server.url))  # beat's way: no request

        def finished() -> list[dict[str, Any]]:
            return [r for r in json_lines(log.read_text(errors="replace")) if "succeeded" in r.get("message", "")]
        wait_for(lambda: len(finished()) >= 2, 60, "the tasks", worker.p)
        done = finished()
    finally:
        worker.stop()
        server.stop()
    ids = [r["request_id"] for r in done]
    assert ids[0] == "task-req-77"
    assert HEX32.fullmatch(ids[1])  # a task queued by no request gets an id of its own
    assert all(r["logger"] == "celery.app.trace" for r in done)
