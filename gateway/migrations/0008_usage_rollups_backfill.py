"""Fills what 0007 added from the usage the database already holds: the latency histograms of
UsageDaily from the usage records (PostgreSQL in one statement, other databases row by row), and
UsageProjectDaily from UsageDaily. Nothing to do on a new database. The bucket rule is copied
here (as of this migration) from gateway/latency.py."""

import datetime as dt
import math
from collections import defaultdict

from django.db import migrations

BUCKETS = 42
TOP = 2.0 ** 20
FIELDS = [f"latency_b{i:02d}" for i in range(BUCKETS)]
SUMS = ["requests", "errors", "prompt_tokens", "completion_tokens", "cost", "latency_ms_sum", *FIELDS]


def bucket(ms):
    if not ms >= 1.0:
        return 0
    if ms >= TOP:
        return BUCKETS - 1
    return min(BUCKETS - 2, 1 + math.floor(2 * math.log2(ms)))


def histograms_postgresql(cursor):
    counts = ", ".join(f"count(*) FILTER (WHERE b = {i}) AS {f}" for i, f in enumerate(FIELDS))
    assign = ", ".join(f"{f} = h.{f}" for f in FIELDS)
    cursor.execute(
        f"UPDATE gateway_usagedaily d SET {assign} FROM (SELECT organization_id, day, key_id, route, {counts} "
        "FROM (SELECT organization_id, (created_at AT TIME ZONE 'UTC')::date AS day, key_id, route, "
        f"CASE WHEN NOT (latency_ms >= 1) THEN 0 WHEN latency_ms >= {TOP:.0f} THEN {BUCKETS - 1} "
        "ELSE 1 + CAST(floor(2 * ln(latency_ms) / ln(2)) AS integer) END AS b FROM gateway_usagerecord) r "
        "GROUP BY organization_id, day, key_id, route) h WHERE d.organization_id = h.organization_id "
        "AND d.day = h.day AND d.key_id = h.key_id AND d.route = h.route")


def histograms_python(apps):
    record, daily = apps.get_model("gateway", "UsageRecord"), apps.get_model("gateway", "UsageDaily")
    counts = defaultdict(lambda: [0] * BUCKETS)
    rows = record.objects.values_list("organization_id", "created_at", "key_id", "route", "latency_ms")
    for org, created_at, key, route, ms in rows.iterator():
        counts[(org, created_at.astimezone(dt.UTC).date(), key, route)][bucket(ms)] += 1
    changed = []
    for row in daily.objects.iterator():
        found = counts.get((row.organization_id, row.day, row.key_id, row.route))
        if found:
            for name, count in zip(FIELDS, found, strict=True):
                setattr(row, name, count)
            changed.append(row)
    daily.objects.bulk_update(changed, FIELDS, batch_size=500)


def forwards(apps, schema_editor):
    if not apps.get_model("gateway", "UsageDaily").objects.exists():
        return
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            histograms_postgresql(cursor)
        else:
            histograms_python(apps)
        cursor.execute("DELETE FROM gateway_usageprojectdaily")
        cursor.execute(
            f"INSERT INTO gateway_usageprojectdaily (organization_id, day, project_id, team_id, route, "
            f"{', '.join(SUMS)}) SELECT organization_id, day, project_id, team_id, route, "
            f"{', '.join(f'sum({c})' for c in SUMS)} FROM gateway_usagedaily "
            "GROUP BY organization_id, day, project_id, team_id, route")


class Migration(migrations.Migration):

    dependencies = [("gateway", "0007_usage_latency_histograms")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
