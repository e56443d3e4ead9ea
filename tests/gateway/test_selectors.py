"""The usage selectors of the dashboards (project_dashboard, key_usage), the rollups they read, and
the latency histograms' percentiles, on the test database (PostgreSQL in CI)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum

from gateway import latency, selectors, usage
from gateway.models import UsageDaily, UsageKeyDaily, UsageProjectDaily, UsageTeamDaily, VirtualKey
from gateway.services import keys
from portal import services
from portal.access import Actor, actor_for_user, system_actor
from tests.factories import Tenant

DAY = dt.date(2026, 3, 10)


def at(day: dt.date, hour: int = 12) -> float:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).timestamp()


def event(t: Tenant, *, key: VirtualKey | None = None, day: dt.date = DAY, route: str = "chat",
          cost_nano: int = 1_000_000, latency_ms: float = 100.0, status: str = "success",
          request_id: str | None = None) -> dict[str, Any]:
    key = key or t.key
    return {"request_id": request_id or uuid.uuid4().hex, "ts": at(day), "key_id": key.pk, "key_hash": key.key_hash,
            "org": t.org.pk, "team": key.team_id, "project": key.project_id,
            "owner": key.owner.email if key.owner else None, "route": route, "group": f"{t.org.slug}/{route}",
            "prompt_tokens": 10, "completion_tokens": 20, "cost_nano": cost_nano, "latency_ms": latency_ms,
            "status": status, "status_code": 200 if status == "success" else 500}


def actor(t: Tenant, role: str) -> Actor:
    return actor_for_user(t.org, t.users[role])


def second_key(t: Tenant, *, same_team: bool) -> VirtualKey:
    """A key of the admin's in the tenant's project (same team) or in another team's project."""
    admin = actor(t, "admin")
    if same_team:
        return keys.key_create(actor=admin, data={"name": f"{t.org.slug} admin key", "team": t.team,
                                                  "project": t.project}).key
    system = system_actor(t.org, "tests")
    team = services.team_create(actor=system, data={"name": f"{t.org.slug}-other"})
    project = services.project_create(actor=system, data={"name": f"{t.org.slug}-other-project", "team": team})
    return keys.key_create(actor=admin, data={"name": f"{t.org.slug} hidden key", "team": team,
                                              "project": project}).key


@pytest.mark.django_db
def test_project_dashboard_per_day_route_and_key(acme: Tenant) -> None:
    big = second_key(acme, same_team=True)
    yesterday = DAY - dt.timedelta(days=1)
    usage.store([
        event(acme, latency_ms=100), event(acme, latency_ms=100), event(acme, latency_ms=3000, status="error"),
        event(acme, route="code", cost_nano=5_000_000, latency_ms=800),
        event(acme, key=big, cost_nano=9_000_000, day=yesterday, latency_ms=200),
        event(acme, day=DAY + dt.timedelta(days=5)),  # outside the window
    ])
    start = DAY - dt.timedelta(days=2)
    board = selectors.project_dashboard(actor(acme, "owner"), acme.project, start=start, end=DAY)

    assert [d["day"] for d in board["days"]] == [(start + dt.timedelta(days=i)).isoformat() for i in range(3)]
    empty, before, today = board["days"]
    assert empty["requests"] == 0 and empty["p50_ms"] is None and empty["error_rate"] == 0.0
    assert before["requests"] == 1 and before["cost"] == pytest.approx(0.009)
    assert today["requests"] == 4 and today["errors"] == 1 and today["error_rate"] == 0.25
    assert today["prompt_tokens"] == 40 and today["completion_tokens"] == 80
    assert today["cost"] == pytest.approx(0.008)
    assert 71 <= today["p50_ms"] <= 142 and 2048 <= today["p95_ms"] <= 4096  # within the buckets of 100 and 3000

    assert [(r["route"], r["requests"]) for r in board["routes"]] == [("chat", 4), ("code", 1)]  # by cost
    chat = board["routes"][0]
    assert chat["cost"] == pytest.approx(0.012) and chat["errors"] == 1 and chat["error_rate"] == 0.25
    assert board["top_keys"] == [
        {"key_id": big.pk, "name": "acme admin key", "requests": 1, "cost": pytest.approx(0.009)},
        {"key_id": acme.key.pk, "name": "acme member key", "requests": 4, "cost": pytest.approx(0.008)}]
    assert board["totals"]["requests"] == 5 and board["totals"]["cost"] == pytest.approx(0.017)
    assert set(board["totals"]) == {"requests", "errors", "error_rate", "prompt_tokens", "completion_tokens", "cost",
                                    "p50_ms", "p95_ms"}


@pytest.mark.django_db
def test_key_usage_per_day(acme: Tenant) -> None:
    other = second_key(acme, same_team=True)
    usage.store([event(acme, latency_ms=50), event(acme, day=DAY - dt.timedelta(days=1), status="error"),
                 event(acme, key=other, cost_nano=7_000_000)])
    rows = selectors.key_usage(actor(acme, "member"), acme.key, start=DAY - dt.timedelta(days=1), end=DAY)
    assert [(r["day"], r["requests"], r["errors"]) for r in rows] == [
        ((DAY - dt.timedelta(days=1)).isoformat(), 1, 1), (DAY.isoformat(), 1, 0)]
    assert rows[1]["cost"] == pytest.approx(0.001) and 35 <= rows[1]["p50_ms"] <= 71
    with pytest.raises(ValueError):
        selectors.key_usage(actor(acme, "member"), acme.key, start=DAY, end=DAY - dt.timedelta(days=1))


@pytest.mark.django_db
def test_another_organization_sees_nothing(acme: Tenant, globex: Tenant) -> None:
    usage.store([event(acme), event(globex)])
    intruder = actor(globex, "owner")
    board = selectors.project_dashboard(intruder, acme.project, start=DAY, end=DAY)
    assert board["totals"]["requests"] == 0 and board["routes"] == [] and board["top_keys"] == []
    assert all(d["requests"] == 0 for d in board["days"])
    assert all(d["requests"] == 0 for d in selectors.key_usage(intruder, acme.key, start=DAY, end=DAY))
    own = selectors.project_dashboard(actor(acme, "viewer"), acme.project, start=DAY, end=DAY)
    assert own["totals"]["requests"] == 1


@pytest.mark.django_db
def test_a_member_sees_only_its_teams_and_own_keys(acme: Tenant) -> None:
    hidden = second_key(acme, same_team=False)
    usage.store([event(acme, cost_nano=1_000_000), event(acme, key=hidden, cost_nano=7_000_000)])
    hidden_project = hidden.project
    member, viewer = actor(acme, "member"), actor(acme, "viewer")
    assert selectors.project_dashboard(member, hidden_project, start=DAY, end=DAY)["totals"]["requests"] == 0
    assert selectors.key_usage(member, hidden, start=DAY, end=DAY)[0]["requests"] == 0
    mine = selectors.project_dashboard(member, acme.project, start=DAY, end=DAY)
    assert mine["totals"]["requests"] == 1 and [k["key_id"] for k in mine["top_keys"]] == [acme.key.pk]
    seen = selectors.project_dashboard(viewer, hidden_project, start=DAY, end=DAY)  # viewers see every team
    assert seen["totals"]["requests"] == 1 and seen["top_keys"][0]["name"] == "acme hidden key"
    # the rollups without keys show a member its teams' rows only, by their own scope
    assert set(UsageProjectDaily.objects.visible_to(member, "view").values_list("team_id", flat=True)) == {
        acme.team.pk}
    assert UsageProjectDaily.objects.visible_to(viewer, "view").count() == 2
    # a key of the member's in a team it is not in: counted once, from the per-key rows
    VirtualKey.objects.filter(pk=hidden.pk).update(owner=acme.users["member"])
    member = actor(acme, "member")
    for group_by in ("day", "route", "team", "project", "key", "user"):
        params = {"group_by": group_by, "from": DAY, "to": DAY}
        assert selectors.usage_report(member, params)["totals"]["requests"] == 2, group_by
        assert selectors.usage_report(member, params | {"team": hidden.team_id})["totals"]["cost"] == 0.007
    assert selectors.project_dashboard(member, hidden_project, start=DAY, end=DAY)["totals"]["requests"] == 1


@pytest.mark.django_db
def test_both_rollups_agree_and_a_redelivery_counts_once(acme: Tenant, globex: Tenant) -> None:
    rng = random.Random(7)
    other = second_key(acme, same_team=True)
    events = [event(rng.choice([acme, globex]) if i % 3 else acme, route=rng.choice(["chat", "code"]),
                    day=DAY - dt.timedelta(days=rng.randrange(3)), latency_ms=rng.lognormvariate(6, 1),
                    cost_nano=rng.randrange(10**7), status=rng.choice(["success"] * 9 + ["error"]))
              for i in range(300)]
    events += [event(acme, key=other) for _ in range(20)]
    assert usage.store(events) == 320
    assert usage.store(events[:50]) == 0  # redelivered: nothing added
    fields = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost", *latency.FIELDS)
    per_key = UsageDaily.objects.aggregate(**{f: Sum(f) for f in fields})
    per_project = UsageProjectDaily.objects.aggregate(**{f: Sum(f) for f in fields})
    assert per_key == per_project and per_key["requests"] == 320
    assert sum(per_key[f] for f in latency.FIELDS) == 320
    assert per_key["cost"] == sum(Decimal(e["cost_nano"]) for e in events) / Decimal(10**9)
    for coarser in (UsageTeamDaily, UsageKeyDaily):
        sums = coarser.objects.aggregate(**{f: Sum(f) for f in fields[:5]})
        assert sums == {f: per_key[f] for f in fields[:5]}, coarser
    for org in (acme.org, globex.org):  # per organization too
        assert (UsageTeamDaily.objects.filter(organization=org).aggregate(n=Sum("requests"))
                == UsageDaily.objects.filter(organization=org).aggregate(n=Sum("requests")))
    assert UsageProjectDaily.objects.count() < UsageDaily.objects.count()  # the keys summed together
    assert UsageKeyDaily.objects.count() < UsageDaily.objects.count()  # the routes summed together


def test_buckets_and_percentile_error_bound() -> None:
    assert [latency.bucket(ms) for ms in (-5, float("nan"), 0.5, 1, 1.41, 1.42, 2, 100, 2**20, float("inf"))] == [
        0, 0, 0, 1, 1, 2, 3, 14, 41, 41]
    assert latency.percentile([0] * latency.BUCKETS, 0.5) is None
    rng = random.Random(3)
    # log-normal latencies (median e^mu ms): narrow ones sit in a bucket or two, where only the bound holds;
    # spread over many buckets, the interpolation is within a few per cent
    for mu, sigma, close in ((3, 0.2, False), (6, 0.05, False), (5.5, 0.6, True), (7.5, 1.2, True), (8, 2, True)):
        sample = sorted(rng.lognormvariate(mu, sigma) for _ in range(20_000))
        counts = latency.histogram(sample)
        for q in (0.5, 0.95):
            exact = sample[int(q * len(sample)) - 1]
            estimate = latency.percentile(counts, q)
            assert estimate is not None
            assert exact / 2**0.5 <= estimate <= exact * 2**0.5, (mu, sigma, q)  # the documented bound
            assert not close or abs(estimate - exact) / exact < 0.05, (mu, sigma, q)
    one = latency.histogram([250.0])
    assert 181 <= (latency.percentile(one, 0.5) or 0) <= 363
    assert latency.percentile(latency.histogram([10**7]), 0.95) == 2**20  # clamped at the last edge


def rollups() -> list[list[dict[str, Any]]]:
    """Every rollup's rows, in a stable order (without ids)."""
    return [list(model.objects.order_by(*key_cols[:unique]).values(*key_cols, *sums))
            for model, key_cols, unique, sums in usage.ROLLUPS]


def mixed_events(t: Tenant, n: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    other = second_key(t, same_team=False)
    return [event(t, key=rng.choice([t.key, other]), route=rng.choice(["chat", "code"]),
                  day=DAY - dt.timedelta(days=rng.randrange(4)), latency_ms=rng.choice([0.2, 2**21, 1.0])
                  if i % 10 == 0 else rng.lognormvariate(6, 1.5), status=rng.choice(["success", "error"]))
            for i in range(n)]


@pytest.mark.django_db
def test_rebuilding_the_rollups_from_the_records_gives_what_the_consumer_wrote(acme: Tenant, globex: Tenant) -> None:
    usage.store(mixed_events(acme, 400) + [event(globex)])
    written = rollups()
    usage.rebuild_rollups(acme.org.pk)  # in SQL: the buckets of latency.bucket_sql, not of latency.bucket
    rebuilt = rollups()
    for a, b in zip(written, rebuilt, strict=True):
        assert [{**r, "latency_ms_sum": pytest.approx(r["latency_ms_sum"])} for r in a] == b
    assert len(rebuilt[0]) > 8 and any(r["organization_id"] == globex.org.pk for r in rebuilt[0])


@pytest.mark.django_db
def test_migration_0009_fills_the_team_and_key_rollups(acme: Tenant) -> None:
    import importlib

    from django.apps import apps
    from django.db import connection

    fill = importlib.import_module("gateway.migrations.0009_usage_team_and_key_rollups").fill
    usage.store(mixed_events(acme, 200))
    written = rollups()
    UsageTeamDaily.objects.all().delete()
    UsageKeyDaily.objects.all().delete()
    fill(apps, type("SchemaEditor", (), {"connection": connection})())
    assert rollups() == written


@pytest.mark.django_db
def test_the_migration_fills_the_histograms_and_the_project_rollup_of_older_usage(acme: Tenant) -> None:
    import importlib

    from django.apps import apps
    from django.db import connection

    backfill = importlib.import_module("gateway.migrations.0008_usage_rollups_backfill")
    usage.store(mixed_events(acme, 200))
    written = rollups()
    UsageDaily.objects.update(**{f: 0 for f in latency.FIELDS})  # as 0007 leaves older rows
    UsageProjectDaily.objects.all().delete()
    backfill.forwards(apps, type("SchemaEditor", (), {"connection": connection})())
    assert rollups() == written


@pytest.mark.django_db
@pytest.mark.parametrize("group_by,owners,members", [
    ("day", UsageTeamDaily, [UsageTeamDaily, UsageKeyDaily]), ("route", UsageTeamDaily, [UsageTeamDaily, UsageDaily]),
    ("team", UsageTeamDaily, [UsageTeamDaily, UsageKeyDaily]),
    ("project", UsageProjectDaily, [UsageProjectDaily, UsageKeyDaily]),
    ("key", UsageKeyDaily, [UsageKeyDaily]), ("user", UsageKeyDaily, [UsageKeyDaily])])
def test_reports_from_the_smaller_rollups_match_the_per_key_rows(acme: Tenant, group_by: str, owners: type[Any],
                                                                   members: list[type[Any]]) -> None:
    usage.store(mixed_events(acme, 200))
    params = {"group_by": group_by, "from": DAY - dt.timedelta(days=3), "to": DAY}
    owner, member = actor(acme, "owner"), actor(acme, "member")
    assert [rows.model for rows in selectors.report_rows(owner, params)] == [owners]
    assert [rows.model for rows in selectors.report_rows(member, params)] == members
    assert [rows.model for rows in selectors.report_rows(owner, params | {"key": acme.key.pk, "route": "chat"})] == [
        UsageDaily]
    report = selectors.usage_report(owner, params)
    field = selectors.GROUPS[group_by]
    groups, totals = selectors.summarize([UsageDaily.objects.filter(organization=acme.org)], field)
    expected = {g["group"].isoformat() if group_by == "day" else g["group"]: g for g in groups}
    assert {r["group"]: {k: v for k, v in r.items() if k != "label"} for r in report["results"]} == {
        k: {**g, "group": k, "avg_latency_ms": pytest.approx(g["avg_latency_ms"], abs=0.1)} for k, g in expected.items()}
    assert report["totals"]["requests"] == totals["requests"] == 200 and len(report["results"]) >= 2
    mine = selectors.usage_report(member, params)["totals"]["requests"]  # the member's own key only
    assert mine == UsageDaily.objects.filter(key=acme.key).aggregate(n=Sum("requests"))["n"] < 200
