"""`LangfuseClient`: the calls the portal makes to a project's Langfuse, one method each, through
the SDK's typed API client with the policy of `base` (retries, errors, pages, the server's version).
Request bodies and answers are dicts in Langfuse's own names (`traceId`). Which calls are
idempotent: reads; scores and dataset items with an id (Langfuse upserts them); datasets (upserted
by name). Score configs, projects, API keys and dataset run items are made anew by each POST."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from itertools import islice
from typing import Any

from langfuse.api.commons.types.observation_level import ObservationLevel
from langfuse.api.core.request_options import RequestOptions

from evals.langfuse_client.base import BaseClient, moment, plain, sdk_arguments, segment
from evals.langfuse_client.errors import LangfuseError

MAX_CONFIG_PAGES = 50  # score configs, read before every evaluation run
PAGE_SIZE = 100

# The v3-generation endpoints are chosen on purpose for v3 servers (and traces for both): the SDK's
# notice that Langfuse Cloud retires them says nothing the version choice does not already handle.
warnings.filterwarnings("ignore", message="On Langfuse Cloud, Langfuse v3 is deprecated", category=DeprecationWarning)


class LangfuseClient(BaseClient):
    def check(self) -> dict[str, Any]:
        """Health and an authenticated call: the project these keys belong to."""
        info = self.server()
        projects = plain(self._call("GET /api/public/projects",
                                    lambda o: self.api.projects.get(request_options=o)).data)
        return {"version": info.version, "api": info.api, "project": projects[0] if projects else None}

    # Organization API (an organization key; enterprise entitlement) ------

    def organization_projects(self) -> list[dict[str, Any]]:
        answer = self._call("GET /api/public/organizations/projects",
                            lambda o: self.api.organizations.get_organization_projects(request_options=o))
        return list(plain(answer.projects))

    def create_project(self, name: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return plain(self._call("POST /api/public/projects", lambda o: self.api.projects.create(
            name=name, retention=0, metadata=metadata or {}, request_options=o), idempotent=False))

    def create_project_api_key(self, project_id: str, note: str) -> dict[str, Any]:
        return plain(self._call("POST /api/public/projects/{projectId}/apiKeys", lambda o: self.api.projects
                                .create_api_key(segment(project_id), note=note, request_options=o),
                                idempotent=False))

    # Traces and observations -------------------------------------------

    def traces(self, *, from_time: str | None = None, to_time: str | None = None, name: str | None = None,
               tags: list[str] | None = None, user_id: str | None = None, environment: list[str] | None = None,
               limit: int = PAGE_SIZE, max_items: int | None = None, order_by: str = "timestamp.asc",
               fields: str | None = None) -> Iterator[dict[str, Any]]:
        """Traces in `order_by` order (default oldest first), page by page (the v3 traces API, served by
        both); `fields`: Langfuse's field groups (core, io, scores, observations, metrics; default all)."""
        def fetch(page: int, options: RequestOptions) -> Any:
            return self.api.trace.list(page=page, limit=limit, order_by=order_by, name=name or None,
                                       user_id=user_id or None, tags=tags or None, environment=environment or None,
                                       from_timestamp=moment(from_time), to_timestamp=moment(to_time),
                                       fields=fields, request_options=options)
        return islice(self._pages("GET /api/public/traces", fetch), max_items)

    def trace_count(self, *, from_time: str | None = None, to_time: str | None = None, name: str | None = None,
                    tags: list[str] | None = None, user_id: str | None = None) -> int:
        """How many traces match (the list endpoint's meta.totalItems, asked with limit=1)."""
        listing = self._call("GET /api/public/traces", lambda o: self.api.trace.list(
            page=1, limit=1, name=name or None, user_id=user_id or None, tags=tags or None, fields="core",
            from_timestamp=moment(from_time), to_timestamp=moment(to_time), request_options=o))
        return int(listing.meta.total_items)

    def trace(self, trace_id: str) -> dict[str, Any]:
        return plain(self._call("GET /api/public/traces/{traceId}",
                                lambda o: self.api.trace.get(segment(trace_id), request_options=o)))

    def observations(self, *, trace_id: str | None = None, from_time: str | None = None, to_time: str | None = None,
                     limit: int = PAGE_SIZE, level: str | None = None, fields: str | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Observations: cursor-paged v2 API on v4, paged v1 API on v3 (`level` and `fields`, the v2 field
        groups, are sent to v4 only)."""
        if self.server().api == "v4":
            def fetch_v2(cursor: str | None, options: RequestOptions) -> Any:
                return self.api.observations.get_many(trace_id=trace_id or None, limit=limit, cursor=cursor,
                                                      from_start_time=moment(from_time),
                                                      level=ObservationLevel(level) if level else None,
                                                      fields=fields or None,
                                                      to_start_time=moment(to_time), request_options=options)
            return self._cursor_pages("GET /api/public/v2/observations", fetch_v2)

        def fetch_v1(page: int, options: RequestOptions) -> Any:
            return self.api.legacy.observations_v1.get_many(page=page, limit=limit, trace_id=trace_id or None,
                                                            request_options=options)
        return self._pages("GET /api/public/observations", fetch_v1)

    # Scores ------------------------------------------------------------

    def score_configs(self) -> Iterator[dict[str, Any]]:
        """The project's score configs (at most MAX_CONFIG_PAGES pages: they are read before every run)."""
        def fetch(page: int, options: RequestOptions) -> Any:
            return self.api.score_configs.get(page=page, limit=PAGE_SIZE, request_options=options)
        return self._pages("GET /api/public/score-configs", fetch, max_pages=MAX_CONFIG_PAGES)

    def score_config(self, name: str, data_type: str, **spec: Any) -> dict[str, Any]:
        """The score config of this name and type, created if missing (`spec` in Langfuse's names:
        minValue, maxValue, categories, description)."""
        for config in self.score_configs():
            if config.get("name") == name and config.get("dataType") == data_type and not config.get("isArchived"):
                return config
        return plain(self._call("POST /api/public/score-configs", lambda o: self.api.score_configs.create(
            name=name, data_type=data_type, **sdk_arguments(spec), request_options=o), idempotent=False))

    def create_score(self, score: dict[str, Any]) -> dict[str, Any]:
        """POST a score (in Langfuse's names). Langfuse upserts by `id`, so a score with an id is
        retried like a GET; one without is sent once."""
        return plain(self._call("POST /api/public/scores", lambda o: self.api.scores.create(
            **sdk_arguments(score), request_options=o), idempotent=bool(score.get("id"))))

    def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """POST a batch of ingestion events (in Langfuse's names: `trace-create`, `generation-create`,
        `score-create`, ...). Each event has an id, by which Langfuse deduplicates it, so the batch is
        retried like a GET. The answer (207) lists the successes and errors per event."""
        from langfuse.api import IngestionEvent
        from pydantic import TypeAdapter

        batch = [TypeAdapter(IngestionEvent).validate_python(e) for e in events]
        return plain(self._call("POST /api/public/ingestion", lambda o: self.api.ingestion.batch(
            batch=batch, request_options=o)))

    def scores(self, *, name: str | None = None, trace_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Scores: cursor-paged v3 API on v4, paged v2 API on v3."""
        if self.server().api == "v4":
            def fetch_v3(cursor: str | None, options: RequestOptions) -> Any:
                return self.api.scores_v3.get_many_v3(limit=PAGE_SIZE, cursor=cursor, name=name or None,
                                                      trace_id=trace_id or None, fields="details,subject",
                                                      request_options=options)
            return self._cursor_pages("GET /api/public/v3/scores", fetch_v3)

        def fetch_v2(page: int, options: RequestOptions) -> Any:
            return self.api.scores.get_many(page=page, limit=PAGE_SIZE, name=name or None, trace_id=trace_id or None,
                                            request_options=options)
        return self._pages("GET /api/public/v2/scores", fetch_v2)

    # Datasets ----------------------------------------------------------

    def dataset(self, name: str) -> dict[str, Any] | None:
        try:
            return plain(self._call("GET /api/public/v2/datasets/{datasetName}",
                                    lambda o: self.api.datasets.get(segment(name), request_options=o)))
        except LangfuseError as exc:
            if exc.status == 404:
                return None
            raise

    def create_dataset(self, name: str, description: str = "", metadata: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
        """Langfuse upserts datasets by name: retried like a GET."""
        return plain(self._call("POST /api/public/v2/datasets", lambda o: self.api.datasets.create(
            name=name, description=description, metadata=metadata or {}, request_options=o)))

    def upsert_dataset_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item in Langfuse's names; with an id, Langfuse upserts it (retried like a GET)."""
        return plain(self._call("POST /api/public/dataset-items", lambda o: self.api.dataset_items.create(
            **sdk_arguments(item), request_options=o), idempotent=bool(item.get("id"))))

    def dataset_items(self, dataset_name: str) -> Iterator[dict[str, Any]]:
        def fetch(page: int, options: RequestOptions) -> Any:
            return self.api.dataset_items.list(dataset_name=dataset_name, page=page, limit=PAGE_SIZE,
                                               request_options=options)
        return self._pages("GET /api/public/dataset-items", fetch)

    def create_dataset_run_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """A run item in Langfuse's names; each POST makes one, so it is sent once."""
        return plain(self._call("POST /api/public/dataset-run-items", lambda o: self.api.dataset_run_items.create(
            **sdk_arguments(item), request_options=o), idempotent=False))

    # Metrics -----------------------------------------------------------

    def metrics(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of a metrics query: the v2 API on v4, v1 on v3."""
        text = json.dumps(query)
        if self.server().api == "v4":
            answer = self._call("GET /api/public/v2/metrics",
                                lambda o: self.api.metrics.metrics(query=text, request_options=o))
        else:
            answer = self._call("GET /api/public/metrics",
                                lambda o: self.api.legacy.metrics_v1.metrics(query=text, request_options=o))
        return list(plain(answer.data))
