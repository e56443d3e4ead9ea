"""The web's /metrics: closed to the public, counts requests, pushes and Celery tasks, and reads the
outbox, the usage stream and the runs when scraped; real gunicorn workers and a real Celery worker
sum into one scrape (prometheus_client's multiprocess directory)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from evals.models import EvalRun
from gateway import sync
from gateway.models import SyncOutbox
from gateway.plugin import contract
from gateway.redis_connection import redis_client
from tests.e2e.procs import Proc, free_port, http_ok, wait_for
from tests.factories import Tenant

pytestmark = pytest.mark.django_db
TOKEN = "scrape-" + secrets.token_hex(12)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


@pytest.fixture
def metrics_token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def test_nobody_reads_metrics_without_the_token_or_an_allowed_network(settings: Any, client: Client) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []
    for auth in ("", "Bearer ", "Bearer anything"):
        response = client.get("/metrics", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 404 and b"portal_" not in response.content  # unset: closed to everyone
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.2").status_code == 404


def test_requests_are_counted_by_view_method_and_status(metrics_token: str, client: Client,
                                                        acme: Tenant) -> None:
    before = scrape(client)
    api = acme.client("owner")
    assert api.get(acme.url("keys/")).status_code == 200
    assert api.get(acme.url("keys/999999/")).status_code == 404
    client.get("/no/such/page/")
    after = scrape(client)
    for labels in ({"view": "api:key-list", "method": "GET", "status": "200"},
                   {"view": "api:key-detail", "method": "GET", "status": "404"},
                   {"view": "unmatched", "method": "GET", "status": "404"}):
        assert value(after, "portal_http_requests_total", **labels) - \
            value(before, "portal_http_requests_total", **labels) == 1, labels
    count = "portal_http_request_seconds_count"
    assert value(after, count, view="api:key-list", method="GET") - \
        value(before, count, view="api:key-list", method="GET") == 1
    # No label names a tenant.
    assert acme.org.slug not in client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()


class Failing:
    def push(self, kind: str, object_id: int) -> None:
        raise ConnectionError("redis is down")


def test_outbox_pushes_and_lag(metrics_token: str, client: Client, acme: Tenant) -> None:
    SyncOutbox.objects.all().delete()
    before = scrape(client)
    old = SyncOutbox.objects.create(kind="key", object_id=acme.key.pk)
    SyncOutbox.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    sync.process(SyncOutbox.objects.filter(pk=old.pk), push=Failing())  # type: ignore[arg-type]
    SyncOutbox.objects.create(kind="team", object_id=acme.team.pk)
    after = scrape(client)
    assert value(after, "portal_gateway_pushes_total", kind="key", result="failed") - \
        value(before, "portal_gateway_pushes_total", kind="key", result="failed") == 1
    assert value(after, "portal_outbox_pending") == 2
    assert value(after, "portal_outbox_failing") == 1
    assert 295 <= value(after, "portal_outbox_oldest_pending_seconds") < 400
    SyncOutbox.objects.update(next_attempt_at=None)  # due now, not after the failed one's backoff
    sync.drain_outbox()  # the real push, into this test's Redis
    done = scrape(client)
    assert value(done, "portal_outbox_pending") == 0 and value(done, "portal_outbox_oldest_pending_seconds") == 0
    assert value(done, "portal_gateway_pushes_total", kind="team", result="ok") - \
        value(before, "portal_gateway_pushes_total", kind="team", result="ok") == 1
    assert value(done, "portal_metrics_source_up", source="database") == 1


def test_usage_stream_lag(metrics_token: str, client: Client) -> None:
    r = redis_client()
    r.delete(contract.USAGE_STREAM)
    assert value(scrape(client), "portal_usage_stream_lag") == 0
    old_ms = int((time.time() - 120) * 1000)
    r.xadd(contract.USAGE_STREAM, {"event": "{}"}, id=f"{old_ms}-0")
    for _ in range(4):
        r.xadd(contract.USAGE_STREAM, {"event": "{}"})
    r.xgroup_create(contract.USAGE_STREAM, contract.USAGE_GROUP, id="0")
    r.xreadgroup(contract.USAGE_GROUP, "consumer-1", {contract.USAGE_STREAM: ">"}, count=2)
    samples = scrape(client)
    assert value(samples, "portal_usage_stream_pending") == 2  # delivered, not written yet
    assert value(samples, "portal_usage_stream_lag") == 3  # not delivered yet
    assert 119 <= value(samples, "portal_usage_stream_oldest_seconds") < 180
    assert value(samples, "portal_metrics_source_up", source="redis") == 1


def test_redis_down_is_said_and_the_rest_still_answers(metrics_token: str, client: Client, settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    samples = scrape(client)
    assert value(samples, "portal_metrics_source_up", source="redis") == 0
    assert ("portal_usage_stream_lag", frozenset()) not in samples  # missing, not a misleading zero
    assert value(samples, "portal_metrics_source_up", source="database") == 1


def test_evaluation_runs_by_status(metrics_token: str, client: Client, acme: Tenant) -> None:
    response = acme.client("owner").post(acme.url(f"projects/{acme.project.pk}/evaluators/"), {
        "name": "correctness", "template": "correctness", "judge_route": "chat"}, format="json")
    assert response.status_code == 201, response.content
    from evals.models import Evaluator

    version = Evaluator.objects.get(pk=response.json()["id"]).versions.get()
    for status in ("running", "failed", "failed", "succeeded"):
        EvalRun.objects.create(project=acme.project, evaluator_version=version, status=status)
    samples = scrape(client)
    assert [value(samples, "portal_eval_runs", status=s) for s in ("queued", "running", "failed", "succeeded")] == \
        [0, 1, 2, 1]


# Real processes: two gunicorn workers and a Celery worker writing into one multiprocess directory.

def test_one_scrape_sums_every_gunicorn_worker_and_the_celery_worker(transactional_db: Any, tmp_path: Path,
                                                                      settings: Any) -> None:
    from tests.e2e.stack import database_url, use_broker

    directory = tmp_path / "prom"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "METRICS_TOKEN": TOKEN,
           "DATABASE_URL": database_url(), "CELERY_BROKER_URL": settings.REDIS_URL, "PORTAL_ENV_FILE": "none",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    port = free_port()
    web = Proc(f"metrics-web-{port}", [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}",
                                       "-w", "2"], env).start()
    worker = Proc(f"metrics-worker-{port}", [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "sync",
                                             "-c", "2", "-n", f"metrics{port}@%h", "--without-gossip",
                                             "--without-mingle"], env).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{url}/healthz"), 60, "gunicorn", web.p)
        for _ in range(30):
            with httpx.Client(timeout=30) as fresh:  # a new connection each: both gunicorn workers answer some
                assert fresh.get(f"{url}/api/v1/no-such-endpoint/").status_code == 404
        from portal.celery import app

        # this test's worker reads REDIS_URL; an e2e stack started earlier in the session bound the pools to its own
        previous = use_broker(settings.REDIS_URL)
        try:
            app.send_task("gateway.tasks.sync_drain_outbox", queue="sync")
        finally:
            use_broker(previous)

        def tasks_counted() -> bool:
            text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
            return value(parse(text), "portal_celery_tasks_total", task="gateway.tasks.sync_drain_outbox",
                         state="SUCCESS") >= 1

        wait_for(tasks_counted, 60, "the worker's task in the web's scrape", worker.p)
        files = {p.name.rsplit("-", 1)[-1] for p in directory.glob("*.db")}
        assert len(files) >= 3  # two web workers and a worker's pool process wrote their own files
        for _ in range(4):  # whichever gunicorn worker answers, it has every worker's numbers
            text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
            assert value(parse(text), "portal_http_requests_total", view="unmatched", method="GET", status="404") == 30
        assert httpx.get(f"{url}/metrics", timeout=30).status_code == 404
    finally:
        web.stop()
        worker.stop()
