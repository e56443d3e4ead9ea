"""How handlers are registered and what they receive.

Handlers are plain functions ``(ctx) -> Response`` registered with `route` for a
(method, path template) of the spec. The server does everything generic before
calling them (faults, auth, spec validation) and after (response validation), so a
handler only implements the endpoint's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .models import ApiKey, Project, parse_time

if TYPE_CHECKING:
    from .server import LangfuseStandin
    from .spec import Operation, Spec


@dataclass
class Response:
    """What a handler answers. ``raw`` bypasses JSON encoding (and response validation)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class Request:
    method: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Ctx:
    """Everything a handler may use."""

    server: LangfuseStandin
    spec: Spec
    op: Operation
    request: Request
    path: dict[str, str]
    query: dict[str, Any]
    body: Any
    key: ApiKey | None
    project: Project | None  # None for organisation-scoped operations

    @property
    def proj(self) -> Project:
        """The project of the (project-scoped) key; handlers of project routes use this."""
        assert self.project is not None
        return self.project

    def violation(self, message: str) -> None:
        """Record a contract violation of the client that does not abort the request."""
        self.server.record_violation(f"request: {self.op.method} {self.op.template}: {message}")

    # --- query helpers shared by many list endpoints
    def page_limit(self, default_limit: int = 50, max_limit: int | None = None) -> tuple[int, int]:
        page = self.query.get("page")
        limit = self.query.get("limit")
        page = 1 if page is None else page
        limit = default_limit if limit is None else limit
        if page < 1:
            raise ApiError(400, "page must be >= 1", violation=True)
        if limit < 1:
            raise ApiError(400, "limit must be >= 1", violation=True)
        if max_limit is not None and limit > max_limit:
            raise ApiError(400, f"limit must be <= {max_limit}", violation=True)
        return page, limit

    def int_param(self, name: str, default: int) -> int:
        value = self.query.get(name)
        return default if value is None else value

    def time_param(self, name: str) -> datetime | None:
        value = self.query.get(name)
        return parse_time(value) if value else None

    def csv_param(self, name: str) -> list[str] | None:
        value = self.query.get(name)
        if value in (None, ""):
            return None
        return [part.strip() for part in str(value).split(",") if part.strip()]


Handler = Callable[[Ctx], Response]


@dataclass(frozen=True)
class Route:
    handler: Handler
    scope: str  # "project" | "org" | "public"
    validate_body: bool


ROUTES: dict[tuple[str, str], Route] = {}


def route(method: str, template: str, *, scope: str = "project", validate_body: bool = True
          ) -> Callable[[Handler], Handler]:
    """Register a handler for an operation of the spec.

    ``scope`` is the kind of API key the operation needs; ``validate_body=False``
    lets the handler validate itself (ingestion validates event by event, OTel
    bodies may be protobuf).
    """

    def register(handler: Handler) -> Handler:
        ROUTES[(method, template)] = Route(handler, scope, validate_body)
        return handler

    return register
