"""Usage back from the gateway: the consumer of the plugin's Redis stream.

Events are read with a consumer group, written in batches (once per request
id, whatever redeliveries happen), summed into daily rollups, and only then
acknowledged. Entries a killed consumer left unacknowledged are claimed by
the next one."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum

from gateway import latency
from gateway.models import UsageDaily, UsageKeyDaily, UsageProjectDaily, UsageRecord, UsageTeamDaily, VirtualKey
from gateway.plugin import contract

log = logging.getLogger(__name__)
NANO = Decimal(contract.NANO)
CLAIM_IDLE_MS = int(os.environ.get("PORTAL_USAGE_CLAIM_IDLE_MS", "30000"))
# After a batch smaller than the batch size the consumer reads again this long after its last read (not
# sooner), so that each transaction carries the events of that while (dozens to hundreds) instead of
# the one or two that arrived since: about ten statements per batch, whatever its size.
BATCH_WAIT_MS = int(os.environ.get("PORTAL_USAGE_BATCH_WAIT_MS", "500"))
RECORD_COLUMNS = ("request_id", "created_at", "organization_id", "team_id", "project_id", "key_id", "owner_email",
                  "route", "model_group", "deployment", "provider_model", "prompt_tokens", "completion_tokens", "cost",
                  "latency_ms", "status", "status_code", "error_class", "trace_id")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def ensure_groups(r: redis.Redis) -> None:
    for stream in (contract.USAGE_STREAM, contract.ALERTS_STREAM):
        try:
            r.xgroup_create(stream, contract.USAGE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def parse(fields: dict[str, str]) -> dict[str, Any] | None:
    try:
        event = json.loads(fields["event"])
        int(event["org"]), int(event["key_id"]), str(event["request_id"])
        return event
    except (KeyError, TypeError, ValueError):
        return None


def _row(e: dict[str, Any]) -> tuple[Any, ...]:
    return (
        str(e["request_id"])[:100], dt.datetime.fromtimestamp(float(e["ts"]), dt.UTC), int(e["org"]),
        int(e["team"]), int(e["project"]), int(e["key_id"]), (e.get("owner") or "")[:254], str(e["route"])[:100],
        str(e.get("group", ""))[:160], str(e.get("deployment", ""))[:100], str(e.get("provider_model", ""))[:200],
        int(e.get("prompt_tokens") or 0), int(e.get("completion_tokens") or 0),
        Decimal(int(e.get("cost_nano") or 0)) / NANO, float(e.get("latency_ms") or 0), str(e["status"])[:10],
        int(e.get("status_code") or 0), str(e.get("error_class", ""))[:100], str(e.get("trace_id", ""))[:32],
    )


INCOMING_DDL = """CREATE TEMP TABLE IF NOT EXISTS usage_incoming (
    request_id varchar(100), created_at timestamptz, organization_id bigint, team_id bigint, project_id bigint,
    key_id bigint, owner_email varchar(254), route varchar(100), model_group varchar(160), deployment varchar(100),
    provider_model varchar(200), prompt_tokens integer, completion_tokens integer, cost numeric(18, 9),
    latency_ms double precision, status varchar(10), status_code integer, error_class varchar(100),
    trace_id varchar(32)) ON COMMIT DELETE ROWS"""


def insert_new(rows: list[tuple[Any, ...]]) -> set[str]:
    """Insert the rows whose request id is new; return those ids."""
    if not rows:
        return set()
    if connection.vendor == "postgresql":
        return _insert_new_copy(rows)
    table = UsageRecord._meta.db_table
    placeholders = "(" + ", ".join(["%s"] * len(RECORD_COLUMNS)) + ")"
    sql = (f'INSERT INTO "{table}" ({", ".join(RECORD_COLUMNS)}) VALUES '
           + ", ".join([placeholders] * len(rows))
           + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id")
    with connection.cursor() as cur:
        cur.execute(sql, [v for row in rows for v in row])
        return {r[0] for r in cur.fetchall()}


def _insert_new_copy(rows: list[tuple[Any, ...]]) -> set[str]:
    """PostgreSQL: COPY the batch into a temporary table, then move the new
    rows over in one statement (several times faster than a long INSERT)."""
    table, cols = UsageRecord._meta.db_table, ", ".join(RECORD_COLUMNS)
    with connection.cursor() as cur:
        cur.execute(INCOMING_DDL)
        with cur.cursor.copy(f"COPY usage_incoming ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM usage_incoming '
                    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id")
        new = {r[0] for r in cur.fetchall()}
        cur.execute("DELETE FROM usage_incoming")
        return new


SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost", "latency_ms_sum", *latency.FIELDS)


KEY_COLUMNS = ("organization_id", "day", "key_id", "route", "team_id", "project_id", "owner_email")
ROLLUPS: tuple[tuple[type[Any], tuple[str, ...], int, tuple[str, ...]], ...] = (
    # (model, its key columns (the first `unique` of them are its unique constraint), its sums)
    (UsageDaily, KEY_COLUMNS, 4, SUMS),
    (UsageProjectDaily, ("organization_id", "day", "project_id", "team_id", "route"), 5, SUMS),
    (UsageTeamDaily, ("organization_id", "day", "team_id", "route"), 4, SUMS[:6]),
    (UsageKeyDaily, ("organization_id", "day", "key_id", "team_id", "project_id", "owner_email"), 3, SUMS[:6]),
)


def add_to_rollups(events: list[dict[str, Any]]) -> None:
    """Add new events to the rollups: per key and route (UsageDaily), and the coarser ones summed from it.
    A row's team, project and owner are those of its first event (a key moved in a batch stays one row)."""
    per_key: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0), 0.0] + [0] * latency.BUCKETS)
    of_key: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for e in events:
        day = dt.datetime.fromtimestamp(float(e["ts"]), dt.UTC).date()
        k = (int(e["org"]), day, int(e["key_id"]), str(e["route"])[:100])
        of_key.setdefault(k, (int(e["team"]), int(e["project"]), (e.get("owner") or "")[:254]))
        s = per_key[k]
        ms = float(e.get("latency_ms") or 0)
        s[0] += 1
        s[1] += e["status"] != "success"
        s[2] += int(e.get("prompt_tokens") or 0)
        s[3] += int(e.get("completion_tokens") or 0)
        s[4] += Decimal(int(e.get("cost_nano") or 0)) / NANO
        s[5] += ms
        s[6 + latency.bucket(ms)] += 1
    if not per_key:
        return
    for model, key_cols, unique, sums in ROLLUPS:
        rows: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Any]]] = {}
        for k, s in per_key.items():
            named = dict(zip(KEY_COLUMNS, (*k, *of_key[k]), strict=True))
            row_key = tuple(named[c] for c in key_cols)
            _, total = rows.setdefault(row_key[:unique], (row_key, [0] * len(sums)))
            total[:] = [a + b for a, b in zip(total, s, strict=False)]  # the first len(sums) of s
        _upsert(model._meta.db_table, key_cols, unique, sums, list(rows.values()))


def _upsert(table: str, key_cols: tuple[str, ...], unique: int, sums: tuple[str, ...],
            rows: list[tuple[tuple[Any, ...], list[Any]]]) -> None:
    """Add `rows` (key columns, sums) to a rollup: the first `unique` key columns are its unique
    constraint; the others (the key's team, project, owner) are kept as first written."""
    cols = (*key_cols, *sums)
    placeholders = "(" + ", ".join(["%s"] * len(cols)) + ")"
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    with connection.cursor() as cur:
        for i in range(0, len(rows), 500):  # bounded statements (SQLite allows 32766 parameters)
            chunk = rows[i:i + 500]
            sql = (f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ' + ", ".join([placeholders] * len(chunk))
                   + f" ON CONFLICT ({', '.join(key_cols[:unique])}) DO UPDATE SET {added}")
            cur.execute(sql, [v for k, s in chunk for v in (*k, *s)])


def store(events: list[dict[str, Any]]) -> int:
    """Write a batch in one transaction; returns how many were new."""
    with transaction.atomic():
        new_ids = insert_new([_row(e) for e in events])
        unique: dict[str, dict[str, Any]] = {}
        for e in events:
            rid = str(e["request_id"])[:100]
            if rid in new_ids:
                unique.setdefault(rid, e)  # a request id twice in one batch counts once
        add_to_rollups(list(unique.values()))
        last_used: dict[int, float] = {}
        for e in unique.values():
            last_used[int(e["key_id"])] = max(last_used.get(int(e["key_id"]), 0.0), float(e["ts"]))
        for key_id, ts in last_used.items():
            when = dt.datetime.fromtimestamp(ts, dt.UTC)
            VirtualKey.objects.filter(pk=key_id).exclude(last_used_at__gte=when).update(last_used_at=when)
    return len(unique)


def handle_batch(r: redis.Redis, entries: list[tuple[str, dict[str, str]]]) -> int:
    events, ids = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        event = parse(fields) if fields else None
        if event is None:
            log.error("usage: dropping malformed stream entry %s", entry_id)
            continue
        events.append(event)
    stored = store(events) if events else 0
    if ids:  # only after the commit
        pipe = r.pipeline(transaction=False)
        pipe.xack(contract.USAGE_STREAM, contract.USAGE_GROUP, *ids)
        pipe.xdel(contract.USAGE_STREAM, *ids)
        pipe.execute()
    return stored


def handle_alerts(r: redis.Redis, entries: list[tuple[str, dict[str, str]]]) -> None:
    from gateway.alerts import budget_alert

    for entry_id, fields in entries:
        try:
            budget_alert(fields)
        except Exception:
            log.exception("usage: could not send budget alert %s", entry_id)
        r.xack(contract.ALERTS_STREAM, contract.USAGE_GROUP, entry_id)


def claim_stale(r: redis.Redis, consumer: str, count: int) -> list[tuple[str, dict[str, str]]]:
    """Entries a dead consumer read but never acknowledged."""
    reply = r.xautoclaim(contract.USAGE_STREAM, contract.USAGE_GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=count)
    gone = reply[2] if len(reply) > 2 else []
    if gone:
        r.xack(contract.USAGE_STREAM, contract.USAGE_GROUP, *gone)
    return [(i, f) for i, f in reply[1] if f]


CONSUMER_LOCK = f"{contract.BASE}:usage:consumer"
CONSUMER_LOCK_MS = 10_000
RELEASE_IF_MINE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def take_consumer_lock(r: redis.Redis, owner: str) -> bool:
    """The consumer lock, waiting long enough for the lock of a consumer that
    died to lapse; False when a live consumer holds it."""
    deadline = time.monotonic() + CONSUMER_LOCK_MS / 1000 + 1
    while True:
        try:
            if r.set(CONSUMER_LOCK, owner, nx=True, px=CONSUMER_LOCK_MS):
                return True
        except redis.RedisError:
            return True  # Redis down: consume() waits for it anyway
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def release_consumer_lock(r: redis.Redis, owner: str) -> None:
    try:
        r.eval(RELEASE_IF_MINE, 1, CONSUMER_LOCK, owner)
    except redis.RedisError:
        pass


@dataclass
class Consumer:
    """One reader of the usage and alert streams, in the usage consumer group."""

    r: redis.Redis
    name: str
    batch: int
    block_ms: int
    lock_owner: str | None
    stored: int = 0
    claimed_at: float = 0.0
    retry_own: bool = True  # first, this consumer's own pending entries (a failed batch)
    need_groups: bool = True

    def step(self) -> None:
        if self.lock_owner is not None:  # keep the consumer lock while alive
            self.r.set(CONSUMER_LOCK, self.lock_owner, px=CONSUMER_LOCK_MS)
        if self.need_groups:
            ensure_groups(self.r)
            self.need_groups = False
        self.claim_stale()
        streams: dict[Any, Any] = {contract.USAGE_STREAM: "0" if self.retry_own else ">", contract.ALERTS_STREAM: ">"}
        reply: Any = self.r.xreadgroup(contract.USAGE_GROUP, self.name, streams, count=self.batch,
                                       block=None if self.retry_own else self.block_ms)
        read_at = time.monotonic()
        self.retry_own = False
        read = 0
        for stream, entries in reply or []:
            if stream == contract.USAGE_STREAM:
                read = len(entries)
                self.stored += handle_batch(self.r, entries)
            else:
                handle_alerts(self.r, entries)
        pause = read_at + BATCH_WAIT_MS / 1000 - time.monotonic()
        if 0 < read < self.batch and pause > 0:
            time.sleep(pause)

    def claim_stale(self) -> None:
        """Entries a dead consumer left pending, taken over every half claim period."""
        if time.monotonic() - self.claimed_at <= CLAIM_IDLE_MS / 2000:
            return
        self.claimed_at = time.monotonic()
        stale = claim_stale(self.r, self.name, self.batch)
        if stale:
            self.stored += handle_batch(self.r, stale)

    def recover(self, exc: Exception) -> None:
        """After a failed step: wait, and never give up (the consumer also carries the hand-over)."""
        if isinstance(exc, redis.ResponseError):
            # The stream or its group is gone (deleted, or Redis restarted without persistence), or Redis
            # refuses commands for a while (out of memory, a replica being promoted).
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                log.warning("usage: Redis refused a command (%s); retrying", type(exc).__name__)
                time.sleep(0.5)
            self.need_groups = True
        elif isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            log.warning("usage: Redis unreachable (%s); retrying", type(exc).__name__)
            self.need_groups = True
            time.sleep(0.5)
        else:  # the database: nothing was acknowledged, the entries stay pending
            log.warning("usage: database unavailable (%s); entries stay pending", type(exc).__name__)
            connection.close()
            self.retry_own = True
            time.sleep(1.0)


def consume(r: redis.Redis, *, seconds: float = 50.0, batch: int = 1000, block_ms: int = 500,
            consumer: str | None = None, lock_owner: str | None = None) -> int:
    """Read and store usage until `seconds` have passed. Returns events stored.

    Survives Redis restarts (waits and re-creates the group) and database
    outages (leaves the entries pending and retries them: nothing is
    acknowledged before it is committed)."""
    reader = Consumer(r, consumer or consumer_name(), batch, block_ms, lock_owner)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            reader.step()
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError, DatabaseError) as exc:
            reader.recover(exc)
    return reader.stored


def drain(r: redis.Redis, consumer: str | None = None) -> int:
    """Store everything now in the stream (tests, commands)."""
    consumer = consumer or consumer_name()
    ensure_groups(r)
    stored = 0
    while True:
        reply: Any = r.xreadgroup(contract.USAGE_GROUP, consumer, {contract.USAGE_STREAM: ">"}, count=1000)
        if not reply:
            return stored
        for _, entries in reply:
            stored += handle_batch(r, entries)


def period_spend(scope: str, ident: int, period: str, now: dt.datetime) -> Decimal:
    """What the database says a scope spent in the budget period containing `now`."""
    field = {"key": "key_id", "project": "project_id", "team": "team_id", "org": "organization_id"}[scope]
    qs = UsageDaily.objects.filter(**{field: ident})
    label = contract.period_start(period, now)
    if period == "daily":
        qs = qs.filter(day=now.date())
    elif period == "weekly":
        qs = qs.filter(day__gte=dt.date.fromisoformat(label[1:]))
    elif period == "monthly":
        qs = qs.filter(day__gte=now.date().replace(day=1))
    return qs.aggregate(total=Sum("cost"))["total"] or Decimal(0)


def coarser_from_daily(model: type[Any], key_cols: tuple[str, ...], unique: int, sums: tuple[str, ...]) -> str:
    """SQL that fills a coarser rollup from UsageDaily's rows of one organization (a parameter)."""
    picked = [*key_cols[:unique], *(f"min({c})" for c in key_cols[unique:])]
    return (f'INSERT INTO "{model._meta.db_table}" ({", ".join((*key_cols, *sums))}) '
            f'SELECT {", ".join(picked)}, {", ".join(f"sum({c})" for c in sums)} FROM "{UsageDaily._meta.db_table}" '
            f"WHERE organization_id = %s GROUP BY {', '.join(key_cols[:unique])}")


def rebuild_rollups(organization_id: int) -> None:
    """Recompute an organization's rollups from its records, in SQL (PostgreSQL): for bulk loads
    (bench/web_bench.py) and repairs. The consumer keeps them up to date otherwise."""
    if connection.vendor != "postgresql":
        raise NotImplementedError("rebuild_rollups needs PostgreSQL")
    buckets = ", ".join(f"count(*) FILTER (WHERE b = {i})" for i in range(latency.BUCKETS))
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '256MB'")
        for model, *_ in ROLLUPS:
            cur.execute(f'DELETE FROM "{model._meta.db_table}" WHERE organization_id = %s', [organization_id])
        cur.execute(
            f'INSERT INTO "{UsageDaily._meta.db_table}" ({", ".join((*KEY_COLUMNS, *SUMS))}) '
            "SELECT organization_id, day, key_id, route, min(team_id), min(project_id), min(owner_email), count(*), "
            "count(*) FILTER (WHERE status <> 'success'), sum(prompt_tokens), sum(completion_tokens), sum(cost), "
            f"sum(latency_ms), {buckets} FROM (SELECT *, (created_at AT TIME ZONE 'UTC')::date AS day, "
            f'{latency.bucket_sql("latency_ms")} AS b FROM "{UsageRecord._meta.db_table}" '
            "WHERE organization_id = %s) r GROUP BY organization_id, day, key_id, route", [organization_id])
        for rollup in ROLLUPS[1:]:
            cur.execute(coarser_from_daily(*rollup), [organization_id])
