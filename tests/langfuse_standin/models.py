"""In-memory state of the stand-in: organisations, projects and their data.

Records are plain dataclasses with snake_case attributes; `render.py` turns them
into the camelCase shapes of the API. Every project keeps its traces and
observations in lists sorted by time (`SortedIndex`) so that time filters are a
bisect and paging through 100,000 traces is a slice, not a scan.
"""

from __future__ import annotations

import bisect
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# --------------------------------------------------------------------- time


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with millisecond precision and a ``Z``, like Langfuse (JS ``toISOString``)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: Any) -> datetime:
    """Parse an ISO 8601 timestamp (any fraction length, ``Z`` or offset) to aware UTC.

    Naive timestamps are taken as UTC (Langfuse stores UTC); raises ValueError.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip().replace(" ", "T", 1)
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time_or_none(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def from_unix_nanos(nanos: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)


def new_id() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------ records


@dataclass(slots=True)
class Trace:
    id: str
    project_id: str
    timestamp: datetime
    name: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    release: str | None = None
    version: str | None = None
    input: Any = None
    output: Any = None
    metadata: Any = None
    tags: list[str] = field(default_factory=list)
    public: bool = False
    bookmarked: bool = False
    environment: str = "default"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class Observation:
    id: str
    trace_id: str
    project_id: str
    type: str
    start_time: datetime
    end_time: datetime | None = None
    name: str | None = None
    parent_observation_id: str | None = None
    level: str = "DEFAULT"
    status_message: str | None = None
    version: str | None = None
    environment: str = "default"
    model: str | None = None
    model_parameters: Any = None
    input: Any = None
    output: Any = None
    metadata: Any = None
    usage_details: dict[str, int] = field(default_factory=dict)
    cost_details: dict[str, float] = field(default_factory=dict)
    completion_start_time: datetime | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    is_app_root: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)  # raw OTel span attributes
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)
    experiment: dict[str, Any] | None = None  # langfuse.experiment.* attributes
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    # Derived numbers used by several renderers and the metrics engine.
    @property
    def input_tokens(self) -> int:
        return sum(v for k, v in self.usage_details.items() if k.startswith("input"))

    @property
    def output_tokens(self) -> int:
        return sum(v for k, v in self.usage_details.items() if k.startswith("output"))

    @property
    def total_tokens(self) -> int:
        if "total" in self.usage_details:
            return self.usage_details["total"]
        return sum(v for k, v in self.usage_details.items())

    def cost(self, kind: str) -> float | None:
        """``input``/``output``/``total`` cost in USD (None when nothing is known)."""
        if not self.cost_details:
            return None
        if kind == "total":
            if "total" in self.cost_details:
                return self.cost_details["total"]
            return sum(self.cost_details.values())
        values = [v for k, v in self.cost_details.items() if k.startswith(kind)]
        return sum(values) if values else None

    @property
    def latency_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    @property
    def time_to_first_token_seconds(self) -> float | None:
        if self.completion_start_time is None:
            return None
        return (self.completion_start_time - self.start_time).total_seconds()


@dataclass(slots=True)
class Score:
    id: str
    project_id: str
    name: str
    data_type: str
    source: str
    timestamp: datetime
    value: float | None = None
    string_value: str | None = None
    trace_id: str | None = None
    observation_id: str | None = None
    session_id: str | None = None
    dataset_run_id: str | None = None
    comment: str | None = None
    metadata: Any = None
    config_id: str | None = None
    queue_id: str | None = None
    author_user_id: str | None = None
    environment: str = "default"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class ScoreConfig:
    id: str
    project_id: str
    name: str
    data_type: str
    is_archived: bool = False
    min_value: float | None = None
    max_value: float | None = None
    categories: list[dict[str, Any]] | None = None
    description: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class Dataset:
    id: str
    project_id: str
    name: str
    description: str | None = None
    metadata: Any = None
    input_schema: Any = None
    expected_output_schema: Any = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class DatasetItem:
    id: str
    project_id: str
    dataset_id: str
    dataset_name: str
    status: str = "ACTIVE"
    input: Any = None
    expected_output: Any = None
    metadata: Any = None
    source_trace_id: str | None = None
    source_observation_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class DatasetRun:
    id: str
    project_id: str
    dataset_id: str
    name: str
    description: str | None = None
    metadata: Any = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class DatasetRunItem:
    id: str
    project_id: str
    dataset_run_id: str
    dataset_item_id: str
    trace_id: str
    observation_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class ApiKey:
    id: str
    public_key: str
    secret_key: str
    project_id: str | None  # None for organisation keys
    note: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    last_used_at: datetime | None = None

    @property
    def display_secret_key(self) -> str:
        return f"{self.secret_key[:6]}...{self.secret_key[-4:]}"


# ------------------------------------------------------------------ indexes


class SortedIndex:
    """Record ids sorted by ``(time, id)``; supports bisecting a time range.

    Appending in time order (the common case: seeding, live ingestion) is O(1);
    out-of-order inserts and re-timing cost one list insert/delete.
    """

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, when: datetime, record_id: str) -> None:
        key = (when, record_id)
        if not self.keys or self.keys[-1] <= key:
            self.keys.append(key)
        else:
            bisect.insort(self.keys, key)

    def remove(self, when: datetime, record_id: str) -> None:
        key = (when, record_id)
        pos = bisect.bisect_left(self.keys, key)
        if pos < len(self.keys) and self.keys[pos] == key:
            del self.keys[pos]

    def extend_sorted(self, keys: list[tuple[datetime, str]]) -> None:
        """Bulk insert (seeding): one sort instead of n inserts."""
        self.keys.extend(keys)
        self.keys.sort()

    def bounds(self, start: datetime | None, end: datetime | None) -> tuple[int, int]:
        """Index range of keys with ``start <= time < end``."""
        lo = 0 if start is None else bisect.bisect_left(self.keys, (start, ""))
        hi = len(self.keys) if end is None else bisect.bisect_left(self.keys, (end, ""))
        return lo, max(lo, hi)


# ------------------------------------------------------------------ project


@dataclass
class Organization:
    id: str
    name: str


@dataclass
class Project:
    """One Langfuse project: its key pairs and all of its data.

    Tests may read the dicts directly (``server.project("p1").traces[trace_id]``);
    writes should go through the API or the server's helpers so the indexes stay
    consistent.
    """

    id: str
    name: str
    org: Organization
    metadata: dict[str, Any] = field(default_factory=dict)
    retention_days: int | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    api_keys: list[ApiKey] = field(default_factory=list)
    traces: dict[str, Trace] = field(default_factory=dict)
    observations: dict[str, Observation] = field(default_factory=dict)
    scores: dict[str, Score] = field(default_factory=dict)
    score_configs: dict[str, ScoreConfig] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)  # by name (unique per project)
    dataset_items: dict[str, DatasetItem] = field(default_factory=dict)
    dataset_runs: dict[str, DatasetRun] = field(default_factory=dict)
    dataset_run_items: dict[str, DatasetRunItem] = field(default_factory=dict)
    # item id -> [(valid_from, snapshot or None once deleted)]: answers `GET /dataset-items?version=`
    dataset_item_history: dict[str, list[tuple[datetime, dict[str, Any] | None]]] = field(default_factory=dict)
    trace_index: SortedIndex = field(default_factory=SortedIndex)
    observation_index: SortedIndex = field(default_factory=SortedIndex)
    observations_by_trace: dict[str, list[str]] = field(default_factory=dict)
    scores_by_trace: dict[str, list[str]] = field(default_factory=dict)

    # -- traces
    def put_trace(self, trace: Trace) -> None:
        old = self.traces.get(trace.id)
        if old is not None:
            self.trace_index.remove(old.timestamp, old.id)
        self.traces[trace.id] = trace
        self.trace_index.add(trace.timestamp, trace.id)

    def retime_trace(self, trace: Trace, timestamp: datetime) -> None:
        if trace.timestamp != timestamp:
            self.trace_index.remove(trace.timestamp, trace.id)
            trace.timestamp = timestamp
            self.trace_index.add(timestamp, trace.id)

    def delete_trace(self, trace_id: str) -> bool:
        trace = self.traces.pop(trace_id, None)
        if trace is None:
            return False
        self.trace_index.remove(trace.timestamp, trace.id)
        for obs_id in self.observations_by_trace.pop(trace_id, []):
            obs = self.observations.pop(obs_id, None)
            if obs is not None:
                self.observation_index.remove(obs.start_time, obs.id)
        for score_id in self.scores_by_trace.pop(trace_id, []):
            self.scores.pop(score_id, None)
        return True

    # -- observations
    def put_observation(self, obs: Observation) -> None:
        old = self.observations.get(obs.id)
        if old is not None:
            self.observation_index.remove(old.start_time, old.id)
            if old.trace_id != obs.trace_id:
                self.observations_by_trace.get(old.trace_id, []).remove(old.id)
                self.observations_by_trace.setdefault(obs.trace_id, []).append(obs.id)
        else:
            self.observations_by_trace.setdefault(obs.trace_id, []).append(obs.id)
        self.observations[obs.id] = obs
        self.observation_index.add(obs.start_time, obs.id)

    def trace_observations(self, trace_id: str) -> list[Observation]:
        ids = self.observations_by_trace.get(trace_id, ())
        return sorted((self.observations[i] for i in ids if i in self.observations), key=lambda o: o.start_time)

    # -- scores
    def put_score(self, score: Score) -> None:
        old = self.scores.get(score.id)
        if old is not None and old.trace_id and old.trace_id != score.trace_id:
            self.scores_by_trace.get(old.trace_id, []).remove(old.id)
        if score.trace_id and (old is None or old.trace_id != score.trace_id):
            self.scores_by_trace.setdefault(score.trace_id, []).append(score.id)
        self.scores[score.id] = score

    def delete_score(self, score_id: str) -> bool:
        score = self.scores.pop(score_id, None)
        if score is None:
            return False
        if score.trace_id:
            ids = self.scores_by_trace.get(score.trace_id, [])
            if score_id in ids:
                ids.remove(score_id)
        return True

    def trace_scores(self, trace_id: str) -> list[Score]:
        return [self.scores[i] for i in self.scores_by_trace.get(trace_id, ()) if i in self.scores]

    # -- datasets
    def dataset_by_id(self, dataset_id: str) -> Dataset | None:
        return next((d for d in self.datasets.values() if d.id == dataset_id), None)

    def run_by_name(self, dataset_id: str, name: str) -> DatasetRun | None:
        return next((r for r in self.dataset_runs.values() if r.dataset_id == dataset_id and r.name == name), None)

    def delete_run(self, run_id: str) -> None:
        self.dataset_runs.pop(run_id, None)
        for item_id in [i.id for i in self.dataset_run_items.values() if i.dataset_run_id == run_id]:
            del self.dataset_run_items[item_id]

    # -- derived trace numbers
    def trace_latency(self, trace_id: str) -> float:
        """Seconds from the first observation start to the last observation end."""
        observations = [self.observations[i] for i in self.observations_by_trace.get(trace_id, ())
                        if i in self.observations]
        if not observations:
            return 0.0
        start = min(o.start_time for o in observations)
        end = max((o.end_time or o.start_time) for o in observations)
        return (end - start).total_seconds()

    def trace_cost(self, trace_id: str) -> float:
        total = 0.0
        for obs_id in self.observations_by_trace.get(trace_id, ()):
            obs = self.observations.get(obs_id)
            if obs is not None:
                total += obs.cost("total") or 0.0
        return total
