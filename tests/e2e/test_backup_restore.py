"""Backup and restore (portal/backup.py): the database is dumped with pg_dump
and restored with pg_restore into a fresh PostgreSQL database; the gateway's
Redis state is rebuilt from it; the real LiteLLM proxies then serve the
restored keys, refuse the revoked one and hold the spent budget, and a key
issued after the backup is gone. A flushed Redis comes back with gateway_sync."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings

from gateway.models import UsageRecord
from tests.e2e.conftest import Stack
from tests.e2e.helpers import chat, issue_key, status_of, until
from tests.e2e.procs import PYTHON, ROOT, portal_env
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def admin_connection() -> psycopg.Connection[Any]:
    db = django_settings.DATABASES["default"]
    return psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
                           dbname="postgres", autocommit=True)


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own (dropped after it), as its DATABASE_URL."""
    db = django_settings.DATABASES["default"]
    name = f"{db['NAME']}_restored"
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(stack: Stack, database_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = portal_env(stack.state_url, database_url)
    return subprocess.run([PYTHON, "manage.py", *argv], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def code(stack: Stack, key: str, gateway: int = 0) -> tuple[int, str]:
    return status_of(lambda: chat(stack.gateways[gateway].url, key, model="priced"))


def test_a_restored_backup_serves_its_keys_refuses_the_rest_and_holds_budgets(
        stack: Stack, acme: Tenant, fresh_database: str, tmp_path: Path) -> None:
    from tests.e2e.stack import database_url

    response = acme.client("admin").post(acme.url("routes/"), {
        "name": "priced", "input_cost_per_million": 1000, "output_cost_per_million": 2000,
        "deployments": [{"model": "gpt-4o-mini", "litellm_params": {"mock_response": "a priced answer"}}]},
        format="json")
    assert response.status_code == 201
    kept = issue_key(acme, allowed_routes=["priced"])
    until(lambda: code(stack, kept["key"])[0] == 200, 5, 0.1)
    until(lambda: UsageRecord.objects.filter(key_id=kept["id"]).exists(), 20)  # the worker's usage consumer
    per_request = UsageRecord.objects.get(key_id=kept["id"]).cost
    budget = (per_request * Decimal("1.5")).quantize(Decimal("0.0001"))  # two requests are admitted
    budgeted = issue_key(acme, allowed_routes=["priced"], max_budget=str(budget))
    assert [code(stack, budgeted["key"])[0] for _ in range(3)] == [200, 200, 429]
    revoked = issue_key(acme, allowed_routes=["priced"])
    assert acme.client("owner").post(acme.url(f"keys/{revoked['id']}/revoke/")).status_code == 200

    dump = tmp_path / "portal.dump"
    done = manage(stack, database_url(), "backup", "--output", str(dump))
    assert done.returncode == 0, done.stderr
    assert "usage: every event stored" in done.stdout and dump.stat().st_mode & 0o077 == 0
    # The backup holds the usage of both budgeted requests: the consumer stored them before the dump.
    assert UsageRecord.objects.filter(key_id=budgeted["id"]).count() == 2
    later = issue_key(acme, allowed_routes=["priced"])  # after the backup: not in it
    assert code(stack, later["key"])[0] == 200

    done = manage(stack, fresh_database, "restore", str(dump))
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    for gateway in (0, 1):
        assert code(stack, kept["key"], gateway)[0] == 200
        assert code(stack, budgeted["key"], gateway)[0] == 429  # the spend came back from the restored usage
        status, message = code(stack, revoked["key"], gateway)
        assert status == 401 and "revoked" in message
        assert code(stack, later["key"], gateway)[0] == 401  # the old Redis state is gone with the restore

    # A Redis that lost everything: gateway_sync rebuilds it from the (restored) database.
    stack.client().flushdb()
    done = manage(stack, fresh_database, "gateway_sync")
    assert done.returncode == 0, done.stderr
    assert code(stack, kept["key"], 1)[0] == 200
    assert code(stack, budgeted["key"], 1)[0] == 429
    assert code(stack, revoked["key"], 1)[0] == 401

    # A database that holds data is not restored over without --clean; a clear line, no traceback.
    done = manage(stack, database_url(), "restore", str(dump))
    assert done.returncode == 1
    assert "is not empty: restore into a new database" in done.stderr and "Traceback" not in done.stderr

