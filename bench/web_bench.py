"""Web benchmark: the server time of the pages that read usage and keys, at scale; prints its figures.

Seeds, in a PostgreSQL database of its own (`portal_webbench`, dropped at the end unless --keep),
one organization with 100 teams, 1,000 projects, 100,000 keys and 10,000,000 usage records over
90 days, skewed like real traffic (a few keys and projects make most requests: the busiest
project has about a third of them, over some 3,000 keys). Teams, projects, members and routes go
through the services; keys and records are generated in SQL (generate_series, indexes built
after the load), and the daily rollups are computed from the records in SQL
(`gateway.usage.rebuild_rollups`, the same sums the usage consumer keeps).

Then it times, through Django's test client (the whole WSGI stack in process: middleware,
session, tenancy, queries, templates; no network), the median of several requests as the
organization's owner (and a member, for the pages that scope per team) to:

- the organization overview,
- the busiest project's dashboard (default range, 90 days),
- the keys page (first page, and page 1000),
- the usage API (by day, the default; by route).

Target: <= 300 ms each.  Usage: `make bench`, or `python bench/web_bench.py [--records N]
[--keys N] [--repeat N] [--keep] [--reuse]` (a smaller run: `--records 1000000 --keys 10000`;
`WEB_BENCH_DATABASE` names the database, `portal_webbench` by default).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE = os.environ.get("WEB_BENCH_DATABASE", "portal_webbench")  # created and dropped by this script
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

TEAMS, PROJECTS, MEMBERS = 100, 1000, 20
ROUTES = ("chat", "code", "embed", "fast", "reason")
TARGET_MS = 300.0
DAYS = 90


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pg(*args: str) -> None:
    subprocess.run([*args, "-h", "127.0.0.1", "-U", "postgres", DATABASE], capture_output=True, check=False)


def setup_django() -> None:
    pg("dropdb", "--if-exists")
    pg("createdb")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def indexes_dropped(table: str) -> Iterator[None]:
    """Drop a table's secondary indexes and unique constraints for a bulk load; build them again after."""
    constraints = sql("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                      "WHERE conrelid = %s::regclass AND contype = 'u'", [table])
    indexes = sql("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                  "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary AND NOT EXISTS "
                  "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)", [table])
    for name, _ in constraints:
        sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        sql(f'DROP INDEX "{name}"')
    yield
    sql("SET maintenance_work_mem = '1GB'")
    for name, definition in constraints:
        sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    for _, definition in indexes:
        sql(definition)


def seed_objects() -> dict[str, Any]:
    """The organization, its owner (and API token), members, teams, projects and routes, through the services."""
    from gateway.services import keys, routes
    from portal import services
    from portal.access import actor_for_user, system_actor
    from portal.models import Membership, OrgRole, TeamRole

    org, token = services.bootstrap_organization(slug="bench", owner_email="owner@bench.test", name="Bench")
    system = system_actor(org, "bench")
    members = [services.member_add(actor=system, email=f"dev{i}@bench.test", role=OrgRole.MEMBER).user
               for i in range(MEMBERS)]
    teams = [services.team_create(actor=system, data={"name": f"team-{i:03d}"}) for i in range(TEAMS)]
    for i, user in enumerate(members):
        services.team_member_add(actor=system, team=teams[i], email=user.email, role=TeamRole.MEMBER)
    projects = [services.project_create(actor=system, data={"name": f"project-{j:04d}", "team": teams[j % TEAMS]})
                for j in range(PROJECTS)]
    for name in ROUTES:
        routes.route_create(actor=system, data={"name": name, "deployments": [
            {"credential": None, "model": f"{name}-model", "litellm_params": {"mock_response": "ok"}}]})
    template = keys.key_create(actor=actor_for_user(org, members[0]),
                               data={"name": "template", "team": teams[0], "project": projects[0]}).key
    owner = Membership.objects.get(organization=org, role=OrgRole.OWNER).user
    return {"org": org, "token": token, "owner": owner, "member": members[0], "projects": projects,
            "members": members, "template": template}


def seed_keys(objects: dict[str, Any], n_keys: int) -> None:
    """Keys in SQL, copies of a key the service made: key n belongs to project floor(P * ((n-1)/K)^2),
    so that the first projects (whose keys the records favour) hold few keys each and the last ones many."""
    from gateway.models import VirtualKey

    sql("CREATE TEMP TABLE bench_projects (j int PRIMARY KEY, id bigint, team_id bigint)")
    sql("INSERT INTO bench_projects VALUES " + ", ".join(
        f"({j}, {p.pk}, {p.team_id})" for j, p in enumerate(objects["projects"])))
    sql("CREATE TEMP TABLE bench_users (j int PRIMARY KEY, id bigint)")
    sql("INSERT INTO bench_users VALUES " + ", ".join(f"({j}, {u.pk})" for j, u in enumerate(objects["members"])))
    table = VirtualKey._meta.db_table
    overrides = {
        "name": "'bench key ' || g", "key_hash": "encode(sha256(('bench-key-' || g)::bytea), 'hex')",
        "key_prefix": "'sk-b' || g", "team_id": "p.team_id", "project_id": "p.id",
        "owner_id": "CASE WHEN mod(g, 100) = 0 THEN u.id END",  # a member owns 50 keys; the others are scripts
        "created_at": "now() - g * interval '1 minute'", "updated_at": "now() - g * interval '1 minute'",
        "last_used_at": "NULL",
    }
    columns = [f.column for f in VirtualKey._meta.local_concrete_fields if f.column != "id"]
    values = ", ".join(overrides.get(c, f't."{c}"') for c in columns)
    with indexes_dropped(table):
        sql(f'INSERT INTO "{table}" ({", ".join(columns)}) SELECT {values} '
            f"FROM generate_series(1, {n_keys}) g "
            f"JOIN bench_projects p ON p.j = floor({PROJECTS} * power((g - 1)::float8 / {n_keys}, 2))::int "
            f"JOIN bench_users u ON u.j = mod(g / 100, {MEMBERS}) "
            f'CROSS JOIN (SELECT * FROM "{table}" WHERE id = %s) t', [objects["template"].pk])
    sql("CREATE TEMP TABLE bench_keys AS SELECT substring(k.key_prefix from 5)::int AS n, k.id, k.team_id, "
        f"k.project_id, coalesce(u.email, '') AS owner_email FROM \"{table}\" k LEFT JOIN auth_user u ON u.id = k.owner_id "
        "WHERE k.key_prefix LIKE 'sk-b%%'")
    sql("CREATE UNIQUE INDEX ON bench_keys (n)")


def seed_records(objects: dict[str, Any], n_records: int, n_keys: int) -> None:
    """Records in SQL: a key drawn as 1 + floor(K * u^3) (the low keys make most requests), a route
    skewed to the first, a time in the last 90 days, a log-normal latency (median about 900 ms),
    random tokens, 3 % errors."""
    from gateway.models import UsageRecord

    sql("CREATE TEMP TABLE bench_routes (i int PRIMARY KEY, name varchar(100))")
    sql("INSERT INTO bench_routes VALUES " + ", ".join(f"({i}, '{name}')" for i, name in enumerate(ROUTES)))
    table, org = UsageRecord._meta.db_table, objects["org"]
    chunk = 1_000_000
    with indexes_dropped(table):
        for lo in range(1, n_records + 1, chunk):
            hi = min(n_records, lo + chunk - 1)
            sql(f'INSERT INTO "{table}" (request_id, created_at, organization_id, team_id, project_id, key_id, '
                "owner_email, route, model_group, deployment, provider_model, prompt_tokens, completion_tokens, "
                "cost, latency_ms, status, status_code, error_class, trace_id) "
                f"SELECT 'bench-' || s.g, s.at, {org.pk}, k.team_id, k.project_id, k.id, k.owner_email, r.name, "
                "'bench/' || r.name, 'dep-1', r.name || '-model', s.pt, s.ct, (s.pt * 0.15 + s.ct * 0.6) / 1e6, "
                "s.lat, CASE WHEN s.err THEN 'error' ELSE 'success' END, CASE WHEN s.err THEN 500 ELSE 200 END, "
                "CASE WHEN s.err THEN 'APIError' ELSE '' END, '' "
                f"FROM (SELECT g, 1 + floor({n_keys} * power(random(), 3))::int AS n, "
                f"floor({len(ROUTES)} * power(random(), 2))::int AS ri, now() - random() * interval '{DAYS} days' AS at, "
                "exp(6.8 + 0.9 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS lat, "
                "(50 + random() * 2000)::int AS pt, (10 + random() * 500)::int AS ct, random() < 0.03 AS err "
                f"FROM generate_series({lo}, {hi}) g) s "
                "JOIN bench_keys k ON k.n = s.n JOIN bench_routes r ON r.i = s.ri")
            log(f"  {hi:,} records")


def seed(n_records: int, n_keys: int) -> dict[str, Any]:
    from gateway import usage

    started = time.monotonic()
    objects = seed_objects()
    log(f"organization, {MEMBERS} members, {TEAMS} teams, {PROJECTS} projects, {len(ROUTES)} routes")
    seed_keys(objects, n_keys)
    log(f"{n_keys:,} keys")
    seed_records(objects, n_records, n_keys)
    with contextlib.ExitStack() as stack:  # the rollups' indexes too are built after the load
        for model, *_ in usage.ROLLUPS:
            stack.enter_context(indexes_dropped(model._meta.db_table))
        usage.rebuild_rollups(objects["org"].pk)
    log("rollups built")
    sql("VACUUM ANALYZE")
    counts = {t: sql(f'SELECT count(*) FROM "{t}"')[0][0] for t in (
        "gateway_virtualkey", "gateway_usagerecord", "gateway_usagedaily", "gateway_usageprojectdaily")}
    busiest = sql("SELECT project_id, count(*) FROM gateway_usagerecord GROUP BY 1 ORDER BY 2 DESC LIMIT 1")[0]
    objects["project_id"], objects["project_records"] = busiest
    objects["project_keys"] = sql("SELECT count(*) FROM gateway_virtualkey WHERE project_id = %s", [busiest[0]])[0][0]
    objects["seed_seconds"] = time.monotonic() - started
    log(f"seeded in {objects['seed_seconds']:.0f} s: " + ", ".join(f"{t}={n:,}" for t, n in counts.items()))
    log(f"busiest project {busiest[0]}: {busiest[1]:,} records, {objects['project_keys']:,} keys")
    return objects


def timed(client: Any, url: str, repeat: int) -> dict[str, Any]:
    """Median and max of `repeat` requests (after one to warm up), the queries of one and their time."""
    from django.db import connection

    response = client.get(url)  # warm: first-use imports, template loading
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    times, queries = [], []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append((time.perf_counter() - started) * 1000)

    for _ in range(repeat):
        queries.clear()
        with connection.execute_wrapper(count):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {"median": statistics.median(times), "max": max(times), "queries": len(queries), "db": sum(queries)}


def measure(objects: dict[str, Any], repeat: int) -> list[tuple[str, str, dict[str, Any]]]:
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tests.factories import api

    setup_test_environment()  # the test client's host; DEBUG off as in production
    owner, member = Client(), Client()
    owner.force_login(objects["owner"])
    member.force_login(objects["member"])
    token = api(objects["token"])
    project = f"/orgs/bench/projects/{objects['project_id']}/"
    ninety_days_ago = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS - 1)).isoformat()
    pages = [
        ("organization overview", "owner", owner, "/orgs/bench/"),
        ("organization overview", "member", member, "/orgs/bench/"),
        ("project dashboard", "owner", owner, project),
        ("project dashboard, 90 days", "owner", owner, f"{project}?days=90&range=90"),
        ("project dashboard", "member", member, project),
        ("keys page", "owner", owner, "/orgs/bench/keys/"),
        ("keys page 1000", "owner", owner, "/orgs/bench/keys/?page=1000"),
        ("keys page", "member", member, "/orgs/bench/keys/"),
        ("usage API by day", "owner", token, "/api/v1/orgs/bench/usage/"),
        ("usage API by route", "owner", token, "/api/v1/orgs/bench/usage/?group_by=route"),
        ("usage API by day, 90 days", "owner", token, f"/api/v1/orgs/bench/usage/?from={ninety_days_ago}"),
    ]
    results = []
    for name, who, client, url in pages:
        results.append((name, who, timed(client, url, repeat)))
        log(f"  {name} ({who}): {results[-1][2]['median']:.0f} ms")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse it with --reuse)")
    parser.add_argument("--reuse", action="store_true", help="measure a database kept by --keep, no seeding")
    args = parser.parse_args()
    if args.reuse:
        import django

        django.setup()
        objects = reuse()
    else:
        log(f"seeding {args.records:,} records and {args.keys:,} keys into {DATABASE}")
        setup_django()
        objects = seed(args.records, args.keys)
    try:
        results = measure(objects, args.repeat)
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            pg("dropdb", "--if-exists")
    print(f"\nWeb pages at scale: {args.records:,} usage records, {args.keys:,} keys; busiest project "
          f"{objects['project_records']:,} records over {objects['project_keys']:,} keys; median of {args.repeat}")
    print(f"{'page':30} {'as':7} {'median ms':>10} {'max ms':>8} {'queries':>8} {'in db ms':>9}  "
          f"target <= {TARGET_MS:.0f} ms")
    for name, who, r in results:
        verdict = "ok" if r["median"] <= TARGET_MS else "SLOW"
        print(f"{name:30} {who:7} {r['median']:10.1f} {r['max']:8.1f} {r['queries']:8d} {r['db']:9.1f}  {verdict}")


def reuse() -> dict[str, Any]:
    from portal import services
    from portal.access import system_actor
    from portal.models import Membership, Organization, OrgRole

    org = Organization.objects.get(slug="bench")
    owner = Membership.objects.get(organization=org, role=OrgRole.OWNER).user
    member = Membership.objects.filter(organization=org, role=OrgRole.MEMBER).order_by("pk").first()
    assert member is not None
    # a fresh owner token: plaintexts are not stored
    _, token = services.api_token_create(actor=system_actor(org, "bench", owner), name=f"bench {time.time()}",
                                         role=OrgRole.OWNER, scope="full")
    busiest = sql("SELECT project_id, sum(requests) FROM gateway_usageprojectdaily GROUP BY 1 ORDER BY 2 DESC LIMIT 1")
    project_id, records = busiest[0]
    keys = sql("SELECT count(*) FROM gateway_virtualkey WHERE project_id = %s", [project_id])[0][0]
    return {"org": org, "owner": owner, "member": member.user, "token": token, "project_id": project_id,
            "project_records": int(records), "project_keys": keys}


if __name__ == "__main__":
    main()
