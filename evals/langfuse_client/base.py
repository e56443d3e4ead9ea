"""`BaseClient`: the SDK's typed API client (`langfuse.api.LangfuseAPI`) over the transport of
`transport`, and the portal's policy around each call; `LangfuseClient` adds one method per call.

- Retries: the SDK's own are off on every call (it retries 409 and no network error, and waits up
  to a minute); a call is retried here, with exponential backoff honouring `Retry-After`, on 429,
  5xx, timeouts and network errors, at most `max_retries` times. A POST that is not idempotent is
  retried only when it cannot have been acted on: it never left (no connection) or was refused
  with 429 (`may_retry`).
- Answers are what the SDK's models parsed, handed to callers as the JSON Langfuse sends (`plain`),
  listings read a bounded number of pages (MAX_PAGES).
- Path parameters are escaped before the SDK puts them into the path (it does not): a dataset
  named `../projects` names that dataset, not another endpoint (`segment`)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self, TypeVar
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
NO_SDK_RETRIES: RequestOptions = {"max_retries": 0}
UNAUTHENTICATED: RequestOptions = {"max_retries": 0, "additional_headers": {"Authorization": None}}


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


def moment(value: str | None) -> Any:
    """An ISO 8601 time for the SDK, which takes datetimes (a time without offset is UTC)."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class BaseClient:
    """One Langfuse host and key pair: the SDK client, the retries made, the server's version."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
