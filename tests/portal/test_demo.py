"""`manage.py seed_demo` and the Redis clean-up `manage.py demo` does on a new database."""

from __future__ import annotations

import io
import json
import os
import socket
import urllib.request
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from gateway.models import VirtualKey
from gateway.plugin import contract
from portal.management.commands.demo import Command, forget_gateway_state
from tests.factories import api


def seed(*options: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("seed_demo", "--json", *options, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_seed_demo_hands_out_a_working_token_and_key_and_rotates_on_rerun() -> None:
    first = seed()
    response = api(first["api_token"]).get("/api/v1/orgs/demo/keys/")
    assert response.status_code == 200
    assert [k["name"] for k in response.json()["results"]] == ["demo key"]
    assert first["demo_key"].startswith("sk-") and first["cline"]["api_key"] == first["demo_key"]

    second = seed()  # idempotent: same org, a fresh token, the key rotated (its plaintext is never stored)
    assert second["demo_key"] != first["demo_key"]
    assert api(first["api_token"]).get("/api/v1/orgs/demo/keys/").status_code == 401
    assert api(second["api_token"]).get("/api/v1/orgs/demo/keys/").status_code == 200
    assert VirtualKey.objects.filter(organization__slug="demo").exclude(status="revoked").count() == 1


def test_a_new_demo_database_forgets_what_an_earlier_demo_left_in_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.xadd(contract.USAGE_STREAM, {"event": '{"key_id": 1}'})  # an event the old demo never consumed
    client.set(contract.key_doc(1), "{}")
    client.set("celery-task-meta-x", "kept")  # not the gateway's
    assert forget_gateway_state() == 2
    assert client.exists(contract.USAGE_STREAM, contract.key_doc(1)) == 0
    assert client.get("celery-task-meta-x") == b"kept"


@pytest.mark.django_db(transaction=True)
def test_seed_demo_connects_langfuse_and_seeds_every_evaluation_page(langfuse_standin: Any, settings: Any) -> None:
    from evals.models import Benchmark, BenchmarkRun, Dataset, EvalReport, EvalRun, EvalSchedule, EvalScore, Evaluator
    from gateway.models import UsageRecord
    from portal.management.commands._demo_evals import STANDIN_PROJECT, STANDIN_PUBLIC_KEY, STANDIN_SECRET_KEY, TRACES

    langfuse_standin.add_project(STANDIN_PROJECT, STANDIN_PROJECT, STANDIN_PUBLIC_KEY, STANDIN_SECRET_KEY)
    settings.LANGFUSE_STANDIN_URL = langfuse_standin.url
    options = ["--langfuse-host", langfuse_standin.url, "--langfuse-public-key", STANDIN_PUBLIC_KEY,
               "--langfuse-secret-key", STANDIN_SECRET_KEY]
    first = seed(*options)
    assert first["langfuse"] == {"host": langfuse_standin.url, "standin": True, "traces": TRACES}
    assert len(langfuse_standin.project(STANDIN_PROJECT).traces) == TRACES
    run = EvalRun.objects.get()
    assert run.status == "succeeded" and run.mean_score and EvalScore.objects.filter(run=run).count() == TRACES
    assert EvalReport.objects.get(run=run).groups and EvalSchedule.objects.get().enabled
    bench = BenchmarkRun.objects.filter(benchmark__name="chat vs fast", status="succeeded")
    assert bench.count() == 2 and {r["route"] for r in bench.last().matrix["routes"]} == {"chat", "fast"}
    days = {r.created_at.date() for r in UsageRecord.objects.all()}
    assert len(days) >= 30 and Dataset.objects.get().items.count() == 8
    counts = (Evaluator.objects.count(), EvalRun.objects.count(), Dataset.objects.count(), Benchmark.objects.count(),
              UsageRecord.objects.count())
    second = seed(*options)  # idempotent: nothing twice
    assert second["usage_events_added"] == 0 and second["langfuse"]["traces"] == TRACES
    assert (Evaluator.objects.count(), EvalRun.objects.count(), Dataset.objects.count(), Benchmark.objects.count(),
            UsageRecord.objects.count()) == counts
    client = Client()
    assert client.login(username="admin@demo.local", password="portal-demo")
    for page in ("evaluators/", f"runs/{run.pk}/", "datasets/", "benchmarks/", "calibration/", ""):
        html = client.get(f"/orgs/demo/projects/{second['project']}/{page}").content.decode()
        assert "Langfuse stand-in" in html, page


def test_the_demo_starts_the_langfuse_stand_in_only_without_a_configured_langfuse(monkeypatch: Any,
                                                                                  tmp_path: Any) -> None:
    from portal.management.commands import demo

    monkeypatch.setattr(demo, "LOG_DIR", tmp_path)
    monkeypatch.setattr(settings, "LANGFUSE_STANDIN_URL", "")  # restored afterwards (the demo sets it)
    for name in ("LANGFUSE_HOST", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.setenv(name, "x")
    assert Command().langfuse(3100) == (None, [])
    monkeypatch.delenv("LANGFUSE_HOST")
    monkeypatch.setenv("LANGFUSE_STANDIN_URL", "")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, options = Command().langfuse(port)
    assert proc is not None and options[:2] == ["--langfuse-host", f"http://127.0.0.1:{port}"]
    assert os.environ["LANGFUSE_STANDIN_URL"] == settings.LANGFUSE_STANDIN_URL == f"http://127.0.0.1:{port}"
    command = Command(stdout=io.StringIO())
    try:
        command.start(proc)  # waits for its health endpoint
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/public/health", timeout=5) as answer:
            assert answer.status == 200
    finally:
        command.stop([proc])
    assert proc.process is not None and proc.process.poll() is not None
