"""The one module that talks to Langfuse over HTTP.

Timeouts on every call; bounded retries with exponential backoff on 429 and
5xx, honouring `Retry-After`; errors that retrying cannot fix are raised as
`LangfuseError(permanent=True)`. The host is a tenant's: every request goes
through the outbound URL policy (`portal.outbound.PolicyTransport`), redirects
are not followed, and errors carry the far side's status, not its answer (but
for one short line of Langfuse's reason for a refused body, from a server that
answered the health check as Langfuse), so the client cannot be used to read an
internal service. The API generation is chosen from the
server's version (`GET /api/public/health`): Langfuse v4 reads observations
through `/api/public/v2/observations` and scores through `/api/public/v3/scores`;
v3 servers read traces through `/api/public/traces`."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from portal.outbound import OutboundRefused, PolicyTransport

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The host is a tenant's: what it answers is bounded, so that it cannot hold a worker for ever
# or fill its memory (a real Langfuse pages 100 items at a time and answers far below this).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 10_000  # one listing: a million items at 100 a page
MAX_CONFIG_PAGES = 50  # score configs, read before every evaluation run


class LangfuseError(Exception):
    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


@dataclass
class ServerInfo:
    version: str
    major: int

    @property
    def api(self) -> str:
        return "v4" if self.major >= 4 else "v3"


class LangfuseClient:
    def __init__(self, host: str, public_key: str, secret_key: str, *, timeout: float = 10.0, max_retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 20.0, transport: httpx.BaseTransport | None = None
                 ) -> None:
        self.host = host.rstrip("/")
        token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.http = httpx.Client(base_url=self.host, timeout=timeout, transport=PolicyTransport(transport),
                                 follow_redirects=False,
                                 headers={"Authorization": f"Basic {token}", "User-Agent": "llmops-portal"})
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self._server: ServerInfo | None = None
        self.retries = 0  # how many retries this client made (for run records and tests)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LangfuseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Transport ---------------------------------------------------------

    def request(self, method: str, path: str, *, params: Any = None, json_body: Any = None,
                auth: bool = True) -> Any:
        attempt = 0
        while True:
            try:
                response = self._send(method, path, params=params, json_body=json_body, auth=auth)
            except OutboundRefused as exc:
                raise LangfuseError(f"Langfuse at {self.host}: {exc}", permanent=True) from None
            except httpx.TimeoutException as exc:
                error = LangfuseError(f"Langfuse at {self.host} timed out ({type(exc).__name__}).")
                delay = self._delay(attempt, None)
            except httpx.TransportError as exc:
                error = LangfuseError(f"Langfuse at {self.host} cannot be reached ({type(exc).__name__}).")
                delay = self._delay(attempt, None)
            else:
                if response.status_code < 300:
                    try:
                        return json.loads(response.content) if response.content else None
                    except (ValueError, RecursionError):
                        raise LangfuseError(f"Langfuse at {self.host} did not answer with JSON; check the host.",
                                            status=response.status_code, permanent=True) from None
                error = self._error(response)
                if response.status_code not in RETRY_STATUSES:
                    raise error
                delay = self._delay(attempt, response.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            self.retries += 1
            log.info("langfuse %s %s failed (%s); retry %d in %.1f s", method, path, error.status or "network",
                     attempt, delay)
            time.sleep(delay)

    def _send(self, method: str, path: str, *, params: Any, json_body: Any, auth: bool) -> httpx.Response:
        """One request, its answer read up to MAX_RESPONSE_BYTES (a longer one is an error, not read whole)."""
        request = self.http.build_request(method, path, params=params, json=json_body,
                                          headers=None if auth else {"Authorization": ""})
        response = self.http.send(request, stream=True)
        try:
            chunks, size = [], 0
            for chunk in response.iter_bytes():  # decoded: a compressed answer is bounded by what it inflates to
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise LangfuseError(f"Langfuse at {self.host} answered more than {MAX_RESPONSE_BYTES // 2**20} "
                                        "MiB to one request; check the host.", status=response.status_code,
                                        permanent=True)
                chunks.append(chunk)
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=request)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * 2 ** attempt, self.max_backoff) * (0.5 + random.random() / 2)

    def _error(self, response: httpx.Response) -> LangfuseError:
        """What failed, by status: the far side's text is not repeated (the
        host is a tenant's, and its answer could be an internal page), except
        Langfuse's own reason for refusing a request body (`_langfuse_message`)."""
        status = response.status_code
        if 300 <= status < 400:
            return LangfuseError(f"Langfuse at {self.host} answered with a redirect ({status}); enter the address "
                                 "it redirects to as the host.", status=status, permanent=True)
        if status == 401:
            return LangfuseError("Langfuse rejected the keys (401): check the public and secret key of the project.",
                                 status=status, permanent=True)
        if status == 403:
            return LangfuseError("Langfuse refused this (403): the keys lack the permission for it.",
                                 status=status, permanent=True)
        if status == 404:
            return LangfuseError(f"Not found in Langfuse (404): {response.request.method} {response.request.url.path}",
                                 status=status, permanent=True)
        hint = self._langfuse_message(response) if status in (400, 409, 422) else None
        return LangfuseError(f"Langfuse answered {status}" + (f": {hint}" if hint else "."), status=status,
                             permanent=status not in RETRY_STATUSES)

    def _langfuse_message(self, response: httpx.Response) -> str | None:
        """The reason Langfuse gives for refusing a request body (a dataset item of
        another dataset, a bad score value), which the user needs to fix it. Only
        from a server that answered the health check as Langfuse does, only its
        JSON `message`, one short line."""
        if self._server is None and not response.request.url.path.endswith("/api/public/health"):
            try:
                self.server()
            except LangfuseError:
                return None
        if self._server is None:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str):
            return None
        line = "".join(c for c in message if c.isprintable()).strip()
        return line[:200] or None

    # Server ------------------------------------------------------------

    def server(self) -> ServerInfo:
        if self._server is None:
            health = self.object("GET", "/api/public/health", auth=False)
            version = str(health.get("version") or "3")
            try:
                major = int(version.lstrip("v").split(".")[0])
            except ValueError:
                major = 3
            self._server = ServerInfo(version, major)
        return self._server

    def check(self) -> dict[str, Any]:
        """Health and an authenticated call: the project these keys belong to."""
        info = self.server()
        data, _ = self.page("/api/public/projects", {})
        return {"version": info.version, "api": info.api,
                "project": data[0] if data and isinstance(data[0], dict) else None}

    # Organization API (an organization key; enterprise entitlement) ------

    def organization_projects(self) -> list[dict[str, Any]]:
        projects = self.object("GET", "/api/public/organizations/projects").get("projects") or []
        return [p for p in projects if isinstance(p, dict)] if isinstance(projects, list) else []

    def create_project(self, name: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", "/api/public/projects",
                            json_body={"name": name, "retention": 0, "metadata": metadata or {}})

    def create_project_api_key(self, project_id: str, note: str) -> dict[str, Any]:
        return self.request("POST", f"/api/public/projects/{project_id}/apiKeys", json_body={"note": note})

    # Paging ------------------------------------------------------------

    def object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """`request` for an answer that must be a JSON object (or empty)."""
        body = self.request(method, path, **kwargs) or {}
        if not isinstance(body, dict):
            raise LangfuseError(f"Langfuse at {self.host} answered {path} with an unexpected shape; check the host.",
                                permanent=True)
        return body

    def page(self, path: str, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """One page of a list: its items and its `meta`, or an error when the answer has another shape."""
        body = self.object("GET", path, params=params)
        data, meta = body.get("data"), body.get("meta")
        if not isinstance(data or [], list) or not isinstance(meta or {}, dict):
            raise LangfuseError(f"Langfuse at {self.host} answered {path} with an unexpected shape; check the host.",
                                permanent=True)
        return data or [], meta or {}

    def _too_many_pages(self, path: str, max_pages: int) -> LangfuseError:
        return LangfuseError(f"Langfuse at {self.host} listed more than {max_pages} pages for {path}; stopped there.",
                             permanent=True)

    def pages(self, path: str, params: dict[str, Any], *, max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
        """Every item of a page-numbered list (`page`, `meta.totalPages`), at most `max_pages` pages."""
        for page in range(1, max_pages + 1):
            data, meta = self.page(path, {**params, "page": page})
            yield from data
            try:
                total = int(meta.get("totalPages") or 0)
            except (TypeError, ValueError):
                total = 0
            if not data or page >= total:
                return
        raise self._too_many_pages(path, max_pages)

    def cursor_pages(self, path: str, params: dict[str, Any], *, max_pages: int = MAX_PAGES
                     ) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paged list (`meta.cursor`, v4), at most `max_pages` pages."""
        params = dict(params)
        for _ in range(max_pages):
            data, meta = self.page(path, params)
            yield from data
            cursor = meta.get("cursor")
            if not cursor or not isinstance(cursor, str):
                return
            params["cursor"] = cursor
        raise self._too_many_pages(path, max_pages)

    # Traces and observations -------------------------------------------

    def traces(self, *, from_time: str | None = None, to_time: str | None = None, name: str | None = None,
               tags: list[str] | None = None, user_id: str | None = None, environment: list[str] | None = None,
               limit: int = 100, max_items: int | None = None) -> Iterator[dict[str, Any]]:
        """Traces in time order, page by page (the v3 traces API, served by both)."""
        params: dict[str, Any] = {"limit": limit, "orderBy": "timestamp.asc"}
        for key, value in (("fromTimestamp", from_time), ("toTimestamp", to_time), ("name", name),
                           ("userId", user_id), ("tags", tags), ("environment", environment)):
            if value:
                params[key] = value
        return itertools.islice(self.pages("/api/public/traces", params), max_items)

    def trace(self, trace_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/public/traces/{quote(trace_id, safe='')}")

    def observations(self, *, trace_id: str | None = None, from_time: str | None = None, to_time: str | None = None,
                     limit: int = 100) -> Iterator[dict[str, Any]]:
        """Observations: cursor-paged v2 API on v4, paged v1 API on v3."""
        params: dict[str, Any] = {"limit": limit}
        if trace_id:
            params["traceId"] = trace_id
        if self.server().api == "v4":
            if from_time:
                params["fromStartTime"] = from_time
            if to_time:
                params["toStartTime"] = to_time
            return self.cursor_pages("/api/public/v2/observations", params)
        return self.pages("/api/public/observations", params)

    # Scores ------------------------------------------------------------

    def score_config(self, name: str, data_type: str, **spec: Any) -> dict[str, Any]:
        """The score config of this name and type, created if missing."""
        for config in self.pages("/api/public/score-configs", {"limit": 100}, max_pages=MAX_CONFIG_PAGES):
            if isinstance(config, dict) and config.get("name") == name and config.get("dataType") == data_type \
                    and not config.get("isArchived"):
                return config
        return self.request("POST", "/api/public/score-configs", json_body={"name": name, "dataType": data_type,
                                                                             **spec})

    def create_score(self, score: dict[str, Any]) -> dict[str, Any]:
        """POST a score. Langfuse upserts by `id`, so a retried call with
        the same id never makes a second score."""
        return self.request("POST", "/api/public/scores", json_body=score)

    def scores(self, *, name: str | None = None, trace_id: str | None = None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100, **({"name": name} if name else {}),
                                  **({"traceId": trace_id} if trace_id else {})}
        if self.server().api == "v4":
            return self.cursor_pages("/api/public/v3/scores", {**params, "fields": "details,subject"})
        return self.pages("/api/public/v2/scores", params)

    # Datasets ----------------------------------------------------------

    def dataset(self, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", f"/api/public/v2/datasets/{quote(name, safe='')}")
        except LangfuseError as exc:
            if exc.status == 404:
                return None
            raise

    def create_dataset(self, name: str, description: str = "", metadata: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
        return self.request("POST", "/api/public/v2/datasets",
                            json_body={"name": name, "description": description, "metadata": metadata or {}})

    def upsert_dataset_item(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/api/public/dataset-items", json_body=item)

    def dataset_items(self, dataset_name: str) -> Iterator[dict[str, Any]]:
        return self.pages("/api/public/dataset-items", {"datasetName": dataset_name, "limit": 100})

    def create_dataset_run_item(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/api/public/dataset-run-items", json_body=item)

    # Metrics -----------------------------------------------------------

    def metrics(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        path = "/api/public/v2/metrics" if self.server().api == "v4" else "/api/public/metrics"
        body = self.request("GET", path, params={"query": json.dumps(query)}) or {}
        return body.get("data", [])
