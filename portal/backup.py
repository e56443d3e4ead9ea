"""Backup and restore of the portal: the PostgreSQL database (pg_dump's custom
format, pg_restore), and the gateway's state in Redis, which is not backed up
but rebuilt from the database (`ManagedBackend.push_all`, as `gateway_sync`).

What the database does not hold yet is the usage the proxies streamed into
Redis and the consumer has not stored: a backup first waits until the usage
stream is caught up (or stores it itself when no consumer runs). A restore
empties the gateway's namespace in Redis before pushing, so that nothing issued
after the backup (a key, a route) stays valid, and the budget counters restart
from the usage the restored database holds. docs/operations.md has the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from gateway import usage
from gateway.plugin import contract
from gateway.redis_connection import redis_client

PG_TIMEOUT = 3600


def pg_env_and_name() -> tuple[dict[str, str], str]:
    """libpq's environment for the default database, and its name; CommandError unless PostgreSQL."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise CommandError("backup and restore work on PostgreSQL (DATABASE_URL=postgres://...); the demo's "
                           "SQLite file is copied while the demo is stopped (var/demo.sqlite3)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for var, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD")):
        if db.get(key):
            env[var] = str(db[key])
    options = db.get("OPTIONS", {})
    if options.get("sslmode"):
        env["PGSSLMODE"] = str(options["sslmode"])
    return env, str(db["NAME"])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CommandError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return path


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise CommandError(f"{Path(argv[0]).name} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


# Usage not yet in the database ------------------------------------------

def usage_backlog(r: redis.Redis) -> int:
    """Usage events in the stream the portal has not stored: never read, or read and not acknowledged."""
    try:
        groups = r.xinfo_groups(contract.USAGE_STREAM)
    except redis.ResponseError:
        return 0  # no stream: nothing was ever sent
    group = next((g for g in groups if g["name"] == contract.USAGE_GROUP), None)
    if group is None:
        return int(r.xlen(contract.USAGE_STREAM))
    lag = group.get("lag")
    if lag is None:  # Redis cannot tell (entries deleted): are there entries after the last one read?
        lag = len(r.xrange(contract.USAGE_STREAM, f"({group['last-delivered-id']}", "+", count=1) or [])
    return int(lag) + int(group["pending"])


def store_pending_usage(timeout: float) -> str:
    """Wait until the usage stream is caught up (or store it here when no
    consumer runs); a line saying how it went. CommandError after `timeout`."""
    r = redis_client()
    owner = f"backup-{usage.consumer_name()}"
    deadline = time.monotonic() + timeout
    stored = 0
    while True:
        backlog = usage_backlog(r)
        if backlog == 0:
            return f"usage: every event stored ({stored} by this backup)" if stored else "usage: every event stored"
        if r.set(usage.CONSUMER_LOCK, owner, nx=True, px=usage.CONSUMER_LOCK_MS):  # no consumer is running
            try:
                stored += usage.drain(r, consumer=owner)
            finally:
                usage.release_consumer_lock(r, owner)
            continue
        if time.monotonic() > deadline:
            raise CommandError(f"the usage consumer still has {backlog} event(s) to store after {timeout:.0f} s: "
                               "check the `usage` worker (manage.py doctor), or pass --no-wait-usage to back up "
                               "without them")
        time.sleep(0.2)


# Backup -------------------------------------------------------------------

def default_path(name: str) -> Path:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return Path(settings.BASE_DIR) / "var" / "backups" / f"{name}-{stamp}.dump"


def dump(path: Path | None) -> tuple[Path, int]:
    """pg_dump -Fc of the database into `path` (mode 600, written whole or not at all): (path, bytes)."""
    env, name = pg_env_and_name()
    path = path or default_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}",
              f"--dbname={name}"], env)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path, path.stat().st_size


# Restore ------------------------------------------------------------------

def database_is_empty() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()")
        row: Any = cursor.fetchone()
    return int(row[0]) == 0


def load(path: Path, *, clean: bool) -> None:
    """pg_restore into the configured database, in one transaction (all of it or nothing)."""
    env, name = pg_env_and_name()
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    _run([_tool("pg_restore"), "--list", str(path)], env)  # a pg_dump custom archive, readable
    if not database_is_empty() and not clean:
        raise CommandError(f"the database {name} is not empty: restore into a new database (createdb, then "
                           "DATABASE_URL), or pass --clean to replace what the backup holds")
    connection.close()  # pg_restore --clean drops tables this process may hold locks on
    argv = [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            f"--dbname={name}"]
    if clean:
        argv += ["--clean", "--if-exists"]
    _run([*argv, str(path)], env)


def clear_gateway_state(r: redis.Redis) -> int:
    """Delete every key of the gateway's namespace (documents, counters, the usage stream); how many."""
    deleted = 0
    batch: list[str] = []
    for name in r.scan_iter(match=f"{contract.BASE}:*", count=1000):
        batch.append(name)
        if len(batch) >= 1000:
            deleted += int(r.unlink(*batch))
            batch = []
    if batch:
        deleted += int(r.unlink(*batch))
    return deleted


def rebuild_gateway_state() -> tuple[int, int]:
    """Empty the gateway's namespace in Redis and push everything from the
    database (spend counters of the current periods included), as
    `gateway_sync`: (Redis keys deleted, virtual keys pushed)."""
    from gateway import sync
    from gateway.backends.managed import ManagedBackend
    from gateway.models import VirtualKey

    backend = sync.backend()
    # Only the backend whose state lives in Redis has any there to clear (no mode named outside gateway/backends).
    deleted = clear_gateway_state(redis_client()) if isinstance(backend, ManagedBackend) else 0
    backend.push_all()
    return deleted, VirtualKey.objects.count()
