"""Latency histograms: fixed buckets kept in the usage rollups, from which p50 and p95 are read.

A rollup row counts its requests per bucket, so that a percentile over any
number of rows is a sum of counts, not a scan of the requests. Bucket 0 holds
latencies under 1 ms, bucket `i` (1 to 40) those in [2^((i-1)/2), 2^(i/2)) ms,
and bucket 41 those from 2^20 ms (about 17.5 minutes) up.

Error bound: a percentile is read by finding the bucket its rank falls in and
interpolating geometrically inside it (by rank), so the estimate lies in the
same bucket as the true value: less than a factor of sqrt(2) away from it
(at most 41 % high or 29 % low); that worst case is met when nearly all
requests fall in one or two buckets. Spread over many buckets, it is much
closer: within 3 % for the log-normal samples of tests/gateway/test_selectors.py
with sigma from 0.6 to 2 (15 % at worst for sigma 0.05). Beyond 2^20 ms the
estimate is clamped to 2^20 ms."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

BUCKETS = 42
TOP = 2.0 ** 20  # ms: the lower edge of the last bucket
FIELDS = tuple(f"latency_b{i:02d}" for i in range(BUCKETS))


def bucket(ms: float) -> int:
    """The bucket of one latency (garbage, negative or NaN: bucket 0)."""
    if not ms >= 1.0:
        return 0
    if ms >= TOP:
        return BUCKETS - 1
    return min(BUCKETS - 2, 1 + math.floor(2 * math.log2(ms)))


def bucket_sql(column: str) -> str:
    """`bucket` as a SQL expression (PostgreSQL and SQLite), for bulk rollups."""
    return (f"CASE WHEN NOT ({column} >= 1) THEN 0 WHEN {column} >= {TOP:.0f} THEN {BUCKETS - 1} "
            f"ELSE 1 + CAST(floor(2 * ln({column}) / ln(2)) AS integer) END")


def bounds(i: int) -> tuple[float, float]:
    """The lower and upper edge of bucket `i`, in ms."""
    if i == 0:
        return 0.0, 1.0
    if i == BUCKETS - 1:
        return TOP, TOP
    return 2.0 ** ((i - 1) / 2), 2.0 ** (i / 2)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The `q` quantile (0 < q <= 1) of a histogram, in ms; None when it counts no request."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            lo, hi = bounds(i)
            fraction = (rank - seen) / count
            value = lo + (hi - lo) * fraction if i == 0 else lo * (hi / lo) ** fraction
            return round(value, 1)
        seen += count
    return round(bounds(BUCKETS - 1)[0], 1)  # pragma: no cover  (rank <= total always ends the loop)


def counts_of(row: Mapping[str, Any], prefix: str = "") -> list[int]:
    """The bucket counts of a row (a model instance's values or an aggregate, fields named `prefix + FIELDS`)."""
    return [int(row.get(prefix + f) or 0) for f in FIELDS]


def histogram(latencies: Iterable[float]) -> list[int]:
    counts = [0] * BUCKETS
    for ms in latencies:
        counts[bucket(ms)] += 1
    return counts
