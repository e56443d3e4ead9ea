"""No key plaintext, API token, provider secret or Langfuse secret key is ever
in the database (raw column values), in the logs (even with SQL logging on) or
in Redis (every key and value of every type, streams included, after the
gateway's state is pushed), where an append-only file would write it to disk."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from gateway.backends.managed import ManagedBackend
from tests.factories import Tenant, api, project_url
from tests.langfuse_standin import LangfuseStandin

PROVIDER_SECRET = "sk-live-provider-SECRET-0123456789"
LANGFUSE_SECRET = "sk-lf-hygiene-SECRET-9876543210"


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


def redis_dump(client: redis.Redis) -> list[tuple[str, bytes]]:
    """(key, every byte string stored under it) for every key of the db, whatever its type."""
    dump: list[tuple[str, bytes]] = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        kind = client.type(raw).decode()
        parts: list[bytes] = [raw]
        if kind == "string":
            parts.append(client.get(raw) or b"")
        elif kind == "hash":
            parts += [b for pair in client.hgetall(raw).items() for b in pair]
        elif kind == "list":
            parts += client.lrange(raw, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(raw))
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(raw, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in client.xrange(raw):
                parts += [b for pair in fields.items() for b in pair]
        else:
            raise AssertionError(f"a Redis key of a type this scan does not read: {key} ({kind})")
        dump.append((key, b"\x00".join(parts)))
    return dump


def spellings(secret: str) -> list[bytes]:
    """The secret as it is, and base64-encoded as in an HTTP Basic header or a careless encoding."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"=")]


@pytest.fixture
def sql_logging() -> Iterator[None]:
    connection.force_debug_cursor = True
    logging.getLogger("django.db.backends").setLevel(logging.DEBUG)
    yield
    connection.force_debug_cursor = False
    logging.getLogger("django.db.backends").setLevel(logging.INFO)


@pytest.fixture
def langfuse_connected(acme: Tenant, langfuse_standin: LangfuseStandin, settings: Any) -> str:
    """acme's project is connected to Langfuse with LANGFUSE_SECRET (the stand-in listens on loopback)."""
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    langfuse_standin.add_project("hygiene", "hygiene", "pk-lf-hygiene", LANGFUSE_SECRET)
    return langfuse_standin.url


@pytest.mark.django_db
def test_no_plaintext_in_database_logs_or_redis(acme: Tenant, caplog: Any, capsys: Any, sql_logging: None,
                                                langfuse_connected: str) -> None:
    caplog.set_level(logging.DEBUG)
    owner = acme.client("owner")
    secrets = [acme.key_plaintext, acme.tokens["owner"], acme.tokens["member"]]
    created = owner.post(acme.url("keys/"), {"name": "k", "team": acme.team.pk, "project": acme.project.pk},
                         format="json").json()
    rotated = owner.post(acme.url(f"keys/{created['id']}/rotate/"), {"grace_period_seconds": 60},
                         format="json").json()
    token = owner.post(acme.url("tokens/"), {"name": "t", "role": "viewer"}, format="json").json()
    assert owner.post(acme.url("credentials/"), {"name": "anthropic", "provider": "anthropic",
                                                 "secrets": {"api_key": PROVIDER_SECRET}},
                      format="json").status_code == 201
    assert owner.patch(acme.url(f"credentials/{acme.credential.pk}/"),
                       {"secrets": {"api_key": PROVIDER_SECRET + "2"}}, format="json").status_code == 200
    # a route that uses the credential, so that its secret is part of the gateway's state
    assert owner.post(acme.url("routes/"), {"name": "priced", "deployments": [
        {"credential": acme.credential.pk, "model": "gpt-4o-mini"}]}, format="json").status_code == 201
    assert owner.put(project_url(acme, "langfuse/"), {"host": langfuse_connected, "public_key": "pk-lf-hygiene",
                                                      "secret_key": LANGFUSE_SECRET},
                     format="json").status_code == 201
    # failing requests log too: make some
    owner.post(acme.url("keys/"), {"name": "k", "max_budget": -1}, format="json")
    api(created["key"]).get(acme.url("keys/"))  # a gateway key is not an API token: 401
    secrets += [created["key"], rotated["key"], token["token"], PROVIDER_SECRET, PROVIDER_SECRET + "2",
                "sk-provider-secret-value", LANGFUSE_SECRET, f"pk-lf-hygiene:{LANGFUSE_SECRET}"]

    ManagedBackend().push_all()  # the gateway's whole state, as the proxies read it
    client = redis.Redis.from_url(settings.REDIS_URL)
    dump = redis_dump(client)
    assert any(key.endswith(f"project:{acme.project.pk}") for key, _ in dump)  # the state was really pushed
    assert any(b"langfuse" in value for _, value in dump)  # with the project's Langfuse settings
    # and the secrets, sealed: the route's provider key in `models`, the Langfuse key in the project
    assert sum(value.count(b"sealed:v1:") for _, value in dump) == 2
    for secret in secrets:
        for spelling in spellings(secret):
            assert [key for key, value in dump if spelling in value] == [], (secret[:8], spelling[:12])

    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records) + "\n".join(capsys.readouterr())
    assert "SELECT" in logged  # SQL logging was really on
    for secret in secrets:
        assert secret not in logged, secret[:8]
    connection.force_debug_cursor = False  # the scan below quotes the secrets in its own SQL
    for secret in secrets:
        assert rows_containing(secret) == [], secret[:8]


def test_the_redis_scan_sees_a_secret_in_any_kind_of_value(settings: Any) -> None:
    """The scan reads every type a secret could hide in (else the test above could pass blind)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set("s", f"x{PROVIDER_SECRET}x")
    client.hset("h", "field", PROVIDER_SECRET)
    client.rpush("l", "a", PROVIDER_SECRET)
    client.sadd("set", PROVIDER_SECRET)
    client.zadd("z", {PROVIDER_SECRET: 1})
    client.xadd("stream", {"event": f'{{"api_key": "{PROVIDER_SECRET}"}}'})
    client.set("b64", base64.b64encode(f"pk:{PROVIDER_SECRET}".encode()))
    found = {key for key, value in redis_dump(client) for spelling in spellings(PROVIDER_SECRET)
             if spelling in value}
    assert found == {"s", "h", "l", "set", "z", "stream", "b64"}
