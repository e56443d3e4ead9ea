"""`/healthz` (the process answers; nothing else touched) and `/readyz` (the database and Redis answer;
503 naming which did not, never why), reachable by a load balancer that probes by IP address over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.e2e.procs import free_port

PROBE_HOST = "10.20.30.40:8000"  # a load balancer probing by address: not in ALLOWED_HOSTS


def test_healthz_answers_without_the_database() -> None:
    # No django_db mark: any query would fail the test (pytest-django blocks database access).
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_probes_answer_a_host_not_allowed_while_other_pages_refuse_it(db: Any) -> None:
    client = Client()
    assert client.get("/healthz", HTTP_HOST=PROBE_HOST).status_code == 200
    assert client.get("/readyz", HTTP_HOST=PROBE_HOST).status_code == 200
    assert client.get("/login/", HTTP_HOST=PROBE_HOST).status_code == 400  # host checks stay on elsewhere


def test_probes_are_not_redirected_to_https(db: Any, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    login = client.get("/login/")
    assert login.status_code == 301 and login["Location"].startswith("https://")


@pytest.mark.django_db
def test_readyz_is_ok_when_the_database_and_redis_answer() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.django_db
def test_readyz_names_redis_when_it_does_not_answer_and_says_no_more(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body == {"status": "fail", "checks": {"database": "ok", "redis": "fail"}}
    assert "refused" not in json.dumps(body).lower() and "127.0.0.1" not in response.content.decode()


def test_readyz_refuses_writes() -> None:
    assert Client().post("/readyz").status_code == 405
