"""`LangfuseClient`: the calls the portal makes to a project's Langfuse, through the SDK's typed API
client (`langfuse.api.LangfuseAPI`), with the portal's policy around each call.

- Retries: the SDK's own are off on every call (it retries 409 and no network error, and waits up
  to a minute); a call is retried here, with exponential backoff honouring `Retry-After`, on 429,
  5xx, timeouts and network errors, at most `max_retries` times. A POST that is not idempotent is
  retried only when it cannot have been acted on: it never left (no connection) or was refused
  with 429. Scores and dataset items carry their id (Langfuse upserts them), datasets their name.
- Answers are what the SDK's models parsed, handed to callers as JSON (`plain`), read a bounded
  number of pages at a time (MAX_PAGES, MAX_CONFIG_PAGES).
- Path parameters are escaped before the SDK puts them into the path (it does not): a dataset
  named `../projects` names that dataset, not another endpoint."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from langfuse.api import LangfuseAPI
from langfuse.api.core.jsonable_encoder import jsonable_encoder
from langfuse.api.core.request_options import RequestOptions

from evals.langfuse_client.errors import (
    CALL_FAILURES,
    LangfuseError,
    failure_error,
    langfuse_message,
    status_error,
)
from evals.langfuse_client.transport import FailedAnswer, http_client

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PAGES = 10_000  # one listing: a million items at 100 a page
MAX_CONFIG_PAGES = 50  # score configs, read before every evaluation run
PAGE_SIZE = 100
NO_SDK_RETRIES: RequestOptions = {"max_retries": 0}
UNAUTHENTICATED: RequestOptions = {"max_retries": 0, "additional_headers": {"Authorization": None}}

# The v3-generation endpoints are chosen on purpose for v3 servers (and traces for both): the SDK's
# notice that Langfuse Cloud retires them says nothing the version choice does not already handle.
warnings.filterwarnings("ignore", message="On Langfuse Cloud, Langfuse v3 is deprecated", category=DeprecationWarning)


@dataclass
class ServerInfo:
    version: str
    major: int

    @property
    def api(self) -> str:
        return "v4" if self.major >= 4 else "v3"


def langfuse_time(value: dt.datetime) -> str:
    """A time as Langfuse writes it (UTC, milliseconds, 'Z'): callers store these strings."""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """An SDK model as the JSON Langfuse sends (camelCase names, its timestamps)."""
    return jsonable_encoder(value, custom_encoder={dt.datetime: langfuse_time})


def segment(value: str) -> str:
    """`value` as one path segment, whatever it holds ('/', '?', '..')."""
    escaped = quote(value, safe="")
    return escaped.replace(".", "%2E") if escaped in (".", "..") else escaped


def sdk_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """A request body in Langfuse's names (`traceId`) as the SDK's keyword arguments (`trace_id`)."""
    return {"".join(f"_{c.lower()}" if c.isupper() else c for c in key): value for key, value in body.items()}


def may_retry(error: LangfuseError, *, idempotent: bool) -> bool:
    """Whether sending again may help and cannot act twice: any transient failure of a read or an
    upsert; of another POST only one that never left or was refused with 429 (before any work)."""
    return not error.permanent and (idempotent or error.unsent or error.status == 429)


class LangfuseClient:
    def __init__(self, host: str, public_key: str, secret_key: str, *, timeout: float = 10.0, max_retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 20.0, transport: httpx.BaseTransport | None = None
                 ) -> None:
        self.host = host.rstrip("/")
        self.http = http_client(timeout=timeout, transport=transport)
        self.api = LangfuseAPI(base_url=self.host, username=public_key, password=secret_key, timeout=timeout,
                               httpx_client=self.http)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self._server: ServerInfo | None = None
        self.retries = 0  # how many retries this client made (for run records and tests)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LangfuseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Calls -------------------------------------------------------------

    def _call(self, what: str, send: Callable[[RequestOptions], T], *, idempotent: bool = True,
              options: RequestOptions = NO_SDK_RETRIES) -> T:
        """`send(options)`, one SDK call, retried as the module says; `what` names it in errors and logs."""
        attempt = 0
        while True:
            try:
                return send(options)
            except CALL_FAILURES as exc:
                error = self._error(what, exc)
            if attempt >= self.max_retries or not may_retry(error, idempotent=idempotent):
                raise error
            delay = self._delay(attempt, error.retry_after)
            attempt += 1
            self.retries += 1
            log.info("langfuse %s failed (%s); retry %d in %.1f s", what, error.status or "network", attempt, delay)
            time.sleep(delay)

    def _error(self, what: str, exc: Exception) -> LangfuseError:
        if not isinstance(exc, FailedAnswer):
            return failure_error(self.host, what, exc)
        response = exc.response
        hint = self._hint(response) if response.status_code in (400, 409, 422) else None
        return status_error(self.host, response, hint)

    def _hint(self, response: httpx.Response) -> str | None:
        """Langfuse's reason for a refused body, only from a server that answered the health check as
        Langfuse does (anything else may be an internal service whose answer must not be repeated)."""
        if self._server is None and not response.request.url.path.endswith("/api/public/health"):
            try:
                self.server()
            except LangfuseError:
                return None
        return langfuse_message(response) if self._server is not None else None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * 2 ** attempt, self.max_backoff) * (0.5 + random.random() / 2)

    def _pages(self, what: str, fetch: Callable[[int, RequestOptions], Any], *, max_pages: int = MAX_PAGES
               ) -> Iterator[dict[str, Any]]:
        """Every item of a page-numbered listing (`fetch(page, options)`), at most `max_pages` pages."""
        for page in range(1, max_pages + 1):
            listing = self._call(what, functools.partial(fetch, page))
            yield from plain(listing.data)
            if not listing.data or page >= listing.meta.total_pages:
                return
        raise self._too_many_pages(what, max_pages)

    def _cursor_pages(self, what: str, fetch: Callable[[str | None, RequestOptions], Any], *,
                      max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paged listing (`fetch(cursor, options)`, v4), at most `max_pages` pages."""
        cursor: str | None = None
        for _ in range(max_pages):
            listing = self._call(what, functools.partial(fetch, cursor))
            yield from plain(listing.data)
            cursor = listing.meta.cursor
            if not cursor:
                return
        raise self._too_many_pages(what, max_pages)

    def _too_many_pages(self, what: str, max_pages: int) -> LangfuseError:
        return LangfuseError(f"Langfuse at {self.host} listed more than {max_pages} pages for {what}; stopped there.",
                             permanent=True)

    # Server ------------------------------------------------------------

    def server(self) -> ServerInfo:
        """The server's version, which chooses the API generation (asked without the keys)."""
        if self._server is None:
            health = self._call("GET /api/public/health", lambda o: self.api.health.health(request_options=o),
                                options=UNAUTHENTICATED)
            version = health.version or "3"
            try:
                major = int(version.lstrip("v").split(".")[0])
            except ValueError:
                major = 3
            self._server = ServerInfo(version, major)
        return self._server

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
               limit: int = PAGE_SIZE, max_items: int | None = None) -> Iterator[dict[str, Any]]:
        """Traces in time order, page by page (the v3 traces API, served by both)."""
        def fetch(page: int, options: RequestOptions) -> Any:
            return self.api.trace.list(page=page, limit=limit, order_by="timestamp.asc", name=name or None,
                                       user_id=user_id or None, tags=tags or None, environment=environment or None,
                                       from_timestamp=moment(from_time), to_timestamp=moment(to_time),
                                       request_options=options)
        return islice(self._pages("GET /api/public/traces", fetch), max_items)

    def trace(self, trace_id: str) -> dict[str, Any]:
        return plain(self._call("GET /api/public/traces/{traceId}",
                                lambda o: self.api.trace.get(segment(trace_id), request_options=o)))

    def observations(self, *, trace_id: str | None = None, from_time: str | None = None, to_time: str | None = None,
                     limit: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Observations: cursor-paged v2 API on v4, paged v1 API on v3."""
        if self.server().api == "v4":
            def fetch_v2(cursor: str | None, options: RequestOptions) -> Any:
                return self.api.observations.get_many(trace_id=trace_id or None, limit=limit, cursor=cursor,
                                                      from_start_time=moment(from_time),
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


def moment(value: str | None) -> Any:
    """An ISO 8601 time for the SDK, which takes datetimes (a time without offset is UTC)."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
