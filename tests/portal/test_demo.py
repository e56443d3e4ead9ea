"""`manage.py seed_demo` and the Redis clean-up `manage.py demo` does on a new database."""

from __future__ import annotations

import io
import json

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from gateway.models import VirtualKey
from gateway.plugin import contract
from portal.management.commands.demo import forget_gateway_state
from tests.factories import api


def seed() -> dict[str, str]:
    out = io.StringIO()
    call_command("seed_demo", "--json", stdout=out)
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
