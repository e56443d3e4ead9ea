"""No key plaintext, API token or provider secret is ever in the database
(raw column values) or in the logs, even with SQL logging on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.factories import Tenant

PROVIDER_SECRET = "sk-live-provider-SECRET-0123456789"


def text_columns() -> Iterator[tuple[str, str]]:
    with connection.cursor() as cur:
        cur.execute("""
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb')""")
        yield from cur.fetchall()


def rows_containing(needle: str) -> list[str]:
    found = []
    with connection.cursor() as cur:
        for table, column in text_columns():
            cur.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s', [f"%{needle}%"])
            if cur.fetchone()[0]:
                found.append(f"{table}.{column}")
    return found


@pytest.fixture
def sql_logging() -> Iterator[None]:
    connection.force_debug_cursor = True
    logging.getLogger("django.db.backends").setLevel(logging.DEBUG)
    yield
    connection.force_debug_cursor = False
    logging.getLogger("django.db.backends").setLevel(logging.INFO)


@pytest.mark.django_db
def test_no_plaintext_in_database_or_logs(acme: Tenant, caplog: Any, capsys: Any, sql_logging: None) -> None:
    caplog.set_level(logging.DEBUG)
    owner = acme.client("owner")
    secrets = [acme.key_plaintext, acme.tokens["owner"], acme.tokens["member"]]
    created = owner.post(acme.url("keys/"), {"name": "k", "team": acme.team.pk, "project": acme.project.pk},
                         format="json").json()
    rotated = owner.post(acme.url(f"keys/{created['id']}/rotate/"), {"grace_period_seconds": 60},
                         format="json").json()
    token = owner.post(acme.url("tokens/"), {"name": "t", "role": "viewer"}, format="json").json()
    owner.post(acme.url("credentials/"), {"name": "anthropic", "provider": "anthropic",
                                          "secrets": {"api_key": PROVIDER_SECRET}}, format="json")
    owner.patch(acme.url(f"credentials/{acme.credential.pk}/"), {"secrets": {"api_key": PROVIDER_SECRET + "2"}},
                format="json")
    # failing requests log too: make some
    owner.post(acme.url("keys/"), {"name": "k", "max_budget": -1}, format="json")
    from tests.factories import api

    api(created["key"]).get(acme.url("keys/"))  # a gateway key is not an API token: 401
    secrets += [created["key"], rotated["key"], token["token"], PROVIDER_SECRET, "sk-provider-secret-value"]

    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records) + "\n".join(capsys.readouterr())
    assert "SELECT" in logged  # SQL logging was really on
    for secret in secrets:
        assert secret not in logged, secret[:8]
    connection.force_debug_cursor = False  # the scan below quotes the secrets in its own SQL
    for secret in secrets:
        assert rows_containing(secret) == [], secret[:8]
