"""`LangfuseStandin`: a stateful Langfuse API server for tests.

It serves the public API of Langfuse v4 (or v3) as the official OpenAPI spec
describes it, keeps per-project state in memory, and checks both directions of
every exchange against the spec: a client request that breaks the contract gets
the 400 Langfuse would send *and* lands in ``server.violations``; a response of
the stand-in that does not match the spec is recorded there too (prefixed
``response:``), because it is a bug in the stand-in. The pytest plugin of
`fixtures` fails the test during which a started stand-in recorded a violation
that is still in ``server.violations`` when the test ends (a test that provokes
them on purpose clears them, or is marked ``langfuse_violations``).

Typical use::

    with LangfuseStandin(version=4) as server:
        server.add_project("p1", "Project 1", "pk-lf-1", "sk-lf-1")
        ...  # point the client at server.url
        assert server.violations == []
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import api_admin, api_datasets, api_scores, api_tracing, metrics  # noqa: F401  (register routes)
from .errors import ApiError
from .models import ApiKey, Observation, Organization, Project, Trace, new_id, utcnow
from .routing import ROUTES, Ctx, Request, Response, Route
from .spec import Operation, Spec, load_spec

DEFAULT_VERSION_STRINGS = {4: "4.0.0", 3: "3.135.0"}
CONTROL_PREFIX = "/_standin/"
_UNSET: Any = object()

# Every stand-in started in this process, for the pytest plugin (`fixtures`) to check after each test.
STARTED: weakref.WeakSet[LangfuseStandin] = weakref.WeakSet()

ENTITLEMENT_MESSAGE = (
    "This feature is not available on your current plan: the organization admin API "
    "(creating projects and API keys) requires an enterprise entitlement ('admin-api')."
)


@dataclass
class Fault:
    """A scripted failure for the next ``remaining`` matching requests."""

    method: str | None
    path: re.Pattern[str]
    status: int | None
    remaining: int
    retry_after: float | None
    delay: float
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and (self.method is None or self.method == method) and bool(self.path.search(path))


class LangfuseStandin:
    """A Langfuse server stand-in; see the module docstring.

    ``version`` picks the spec (4 = current API, 3 = the older v3 server, where the
    v4-only endpoints answer 404). ``serve_deprecated=False`` makes operations the
    spec marks deprecated answer 404, as a self-hosted v4 server without the
    legacy v3 endpoints would.
    """

    def __init__(self, version: int = 4, *, host: str = "127.0.0.1", port: int = 0,
                 version_string: str | None = None, serve_deprecated: bool = True) -> None:
        self.version = version
        self.spec: Spec = load_spec(version)
        self.version_string = version_string or DEFAULT_VERSION_STRINGS[version]
        self.serve_deprecated = serve_deprecated
        self.host, self._port = host, port
        self.organization = Organization(id="org-standin", name="Stand-in Organization")
        self.projects: dict[str, Project] = {}
        self.org_keys: list[ApiKey] = []
        self.org_entitled = False
        self.model_prices: dict[str, dict[str, float]] = {}
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.unimplemented: list[str] = []
        self._keys: dict[str, ApiKey] = {}
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LangfuseStandin:
        """Bind (port 0 = a free port) and serve in a daemon thread."""
        self._stopping.clear()
        httpd = ThreadingHTTPServer((self.host, self._port), _Handler)
        httpd.daemon_threads = True
        httpd.standin = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="langfuse-standin", daemon=True)
        self._thread.start()
        STARTED.add(self)
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests sleeping in a delay fault
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread (used by ``python -m tests.langfuse_standin``)."""
        if self._httpd is None:
            self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> LangfuseStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the stand-in is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------ projects & keys
    def add_project(self, project_id: str, name: str | None = None, public_key: str | None = None,
                    secret_key: str | None = None) -> Project:
        """Add a project (or another key pair to an existing one) and return it."""
        with self._lock:
            project = self.projects.get(project_id)
            if project is None:
                project = Project(id=project_id, name=name or project_id, org=self.organization)
                self.projects[project_id] = project
            if public_key or secret_key:
                self.add_api_key(project_id, public_key, secret_key)
            return project

    def project(self, project_id: str) -> Project:
        return self.projects[project_id]

    def create_project(self, name: str, *, metadata: dict[str, Any] | None = None,
                       retention_days: int | None = None) -> Project:
        """A project with a generated id, as ``POST /api/public/projects`` creates it."""
        project = self.add_project(f"proj-{uuid.uuid4().hex[:12]}", name)
        project.metadata = dict(metadata or {})
        project.retention_days = retention_days
        return project

    def delete_project(self, project_id: str) -> None:
        with self._lock:
            project = self.projects.pop(project_id)
            for key in project.api_keys:
                self._keys.pop(key.public_key, None)

    def add_api_key(self, project_id: str, public_key: str | None = None, secret_key: str | None = None, *,
                    note: str | None = None) -> ApiKey:
        """Add a key pair to a project (generated when not given)."""
        with self._lock:
            key = ApiKey(id=new_id(), public_key=public_key or f"pk-lf-{uuid.uuid4()}",
                         secret_key=secret_key or f"sk-lf-{uuid.uuid4()}", project_id=project_id, note=note)
            if key.public_key in self._keys:
                raise ValueError(f"public key {key.public_key} is already in use")
            self._keys[key.public_key] = key
            self.projects[project_id].api_keys.append(key)
            return key

    def remove_api_key(self, project_id: str, key_id: str) -> bool:
        with self._lock:
            project = self.projects[project_id]
            for key in project.api_keys:
                if key.id == key_id:
                    project.api_keys.remove(key)
                    self._keys.pop(key.public_key, None)
                    return True
            return False

    def key_exists(self, public_key: str | None, secret_key: str | None) -> bool:
        return any(k.public_key == public_key or k.secret_key == secret_key for k in self._keys.values())

    def set_org_key(self, public_key: str, secret_key: str, entitled: bool = True) -> ApiKey:
        """Configure the organisation API key; ``entitled`` = the plan has the admin API."""
        with self._lock:
            for old in self.org_keys:
                self._keys.pop(old.public_key, None)
            key = ApiKey(id=new_id(), public_key=public_key, secret_key=secret_key, project_id=None, note="org key")
            self.org_keys = [key]
            self._keys[public_key] = key
            self.org_entitled = entitled
            return key

    def set_model_price(self, model: str, *, input: float = 0.0, output: float = 0.0) -> None:
        """USD per token, used for observations that arrive without costs (like Langfuse model prices)."""
        self.model_prices[model] = {"input": input, "output": output}

    # --------------------------------------------------------------- faults
    def inject(self, method: str | None = None, path_regex: str = ".*", status: int | None = _UNSET,
               times: int = 2, retry_after: float | None = _UNSET, delay: float = 0.0) -> Fault:
        """Make the next ``times`` matching requests fail and/or be slow.

        ``status`` defaults to 429 unless only a ``delay`` is given, in which case the
        request is answered normally after sleeping (to trigger client timeouts).
        ``retry_after`` (seconds) defaults to 1 for 429/503; pass None for no header.
        """
        if status is _UNSET:
            status = None if delay > 0 else 429
        if retry_after is _UNSET:
            retry_after = 1.0 if status in (429, 503) else None
        fault = Fault(method.upper() if method else None, re.compile(path_regex), status, times, retry_after, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    fault.hits += 1
                    return fault
        return None

    # -------------------------------------------------------- observability
    def record_violation(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)

    def take_violations(self) -> list[str]:
        """The violations recorded so far, forgotten as they are returned."""
        with self._lock:
            taken = list(self.violations)
            self.violations.clear()
            return taken

    def clear_log(self) -> None:
        """Forget recorded requests, violations and unimplemented calls."""
        with self._lock:
            self.requests.clear()
            self.violations.clear()
            self.unimplemented.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
        """Poll until ``predicate()`` is true (e.g. spans exported asynchronously arrived)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return True
            time.sleep(interval)
        with self._lock:
            return predicate()

    # -------------------------------------------------------------- seeding
    def seed_traces(self, project_id: str, n: int, *, start: datetime | None = None,
                    interval: timedelta = timedelta(seconds=1), name: Any = "seeded-trace", user_id: Any = None,
                    session_id: Any = None, environment: Any = "default", tags: Any = (),
                    model: Any = "gpt-4o-mini", input_tokens: Any = 10, output_tokens: Any = 20,
                    cost: Any = 0.0001, latency: float = 0.5, metadata: Any = None) -> list[str]:
        """Insert ``n`` traces with one generation each, fast (bulk index build).

        Traces are ``interval`` apart starting at ``start`` (default: so that the last
        one is now). Every value argument may also be a function of the index ``i``,
        e.g. ``user_id=lambda i: f"user-{i % 10}"``. Returns the trace ids in order.
        """
        def value(arg: Any, i: int) -> Any:
            return arg(i) if callable(arg) else arg

        begin = start or (utcnow() - interval * n)
        span = timedelta(seconds=latency)
        now = utcnow()
        with self._lock:
            project = self.projects[project_id]
            trace_keys, obs_keys, ids = [], [], []
            random_hex = os.urandom(24 * n).hex()  # one syscall instead of 2n uuid4() calls
            for i in range(n):
                trace_id, obs_id = random_hex[48 * i: 48 * i + 32], random_hex[48 * i + 32: 48 * i + 48]
                when = begin + interval * i
                env = value(environment, i)
                trace = Trace(id=trace_id, project_id=project_id, timestamp=when, name=value(name, i),
                              user_id=value(user_id, i), session_id=value(session_id, i),
                              tags=list(value(tags, i)), environment=env, metadata=value(metadata, i),
                              input={"messages": [{"role": "user", "content": f"question {i}"}]},
                              output={"role": "assistant", "content": f"answer {i}"}, created_at=now, updated_at=now)
                tokens_in, tokens_out, total_cost = value(input_tokens, i), value(output_tokens, i), value(cost, i)
                obs = Observation(id=obs_id, trace_id=trace_id, project_id=project_id, type="GENERATION",
                                  start_time=when, end_time=when + span, name="chat", environment=env,
                                  model=value(model, i),
                                  usage_details={"input": tokens_in, "output": tokens_out,
                                                 "total": tokens_in + tokens_out},
                                  cost_details={"total": total_cost} if total_cost is not None else {},
                                  created_at=now, updated_at=now)
                project.traces[trace_id] = trace
                project.observations[obs_id] = obs
                project.observations_by_trace[trace_id] = [obs_id]
                trace_keys.append((when, trace_id))
                obs_keys.append((when, obs_id))
                ids.append(trace_id)
            project.trace_index.extend_sorted(trace_keys)
            project.observation_index.extend_sorted(obs_keys)
        return ids

    # ------------------------------------------------------------- dispatch
    def handle(self, request: Request) -> Response:
        """Serve one request and record it (see `_serve` for the steps)."""
        entry: dict[str, Any] = {
            "method": request.method, "path": request.raw_path, "query": request.query,
            "public_key": _credentials(request.headers.get("authorization"))[0],
            "ingestion_version": api_tracing.ingestion_version(request.headers),
            "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
            "operation": None, "fault": False, "status": None,
        }
        response = self._serve(request, entry)
        entry["status"] = response.status
        if not request.raw_path.startswith(CONTROL_PREFIX):
            with self._lock:
                self.requests.append(entry)
        return response

    def _serve(self, request: Request, entry: dict[str, Any]) -> Response:
        fault = self._take_fault(request.method, request.raw_path)
        if fault is not None:
            entry["fault"] = True
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                return _fault_response(fault)
        if request.raw_path.startswith(CONTROL_PREFIX):
            return self._control(request)
        op, path_params, path_known = self.spec.match(request.method, request.raw_path)
        if op is None or (op.deprecated and not self.serve_deprecated):
            if path_known and op is None:
                return _error(ApiError(405, f"Method {request.method} not allowed"))
            return _error(ApiError(404, f"No endpoint {request.method} {request.raw_path} in the "
                                        f"Langfuse v{self.version} API"))
        entry["operation"] = op.operation_id
        route = ROUTES.get((op.method, op.template))
        try:
            key = self._authorize(op, route, request)
            if route is None:
                with self._lock:
                    self.unimplemented.append(f"{op.method} {op.template}")
                raise ApiError(501, f"{op.method} {op.template} is not implemented by the Langfuse stand-in")
            query, body = self._validated_input(op, route, request)
            ctx = Ctx(server=self, spec=self.spec, op=op, request=request, path=path_params, query=query,
                      body=body, key=key, project=self.projects.get(key.project_id) if key and key.project_id
                      else None)
            with self._lock:
                response = route.handler(ctx)
        except ApiError as exc:
            if exc.violation:
                self.record_violation(f"request: {op.method} {op.template}: {exc.message}")
            response = _error(exc)
        except Exception as exc:  # a crash is a bug of the stand-in: make it visible
            self.record_violation(f"response: {op.method} {op.template}: stand-in error {exc!r}")
            response = _error(ApiError(500, f"Internal stand-in error: {exc!r}"))
        self._check_response(op, response)
        return response

    def _authorize(self, op: Operation, route: Route | None, request: Request) -> ApiKey | None:
        """Basic auth with a project or organisation key, then scope and entitlement checks."""
        if (route is not None and route.scope == "public") or not op.secured:
            return None
        public_key, secret_key = _credentials(request.headers.get("authorization"))
        if request.headers.get("authorization") is None:
            raise ApiError(401, "No authorization header")
        if public_key is None:
            raise ApiError(401, "Invalid authorization header. Confirm that you've configured the correct host.")
        key = self._keys.get(public_key)
        if key is None or key.secret_key != secret_key:
            raise ApiError(401, "Invalid credentials. Confirm that you've configured the correct host.")
        key.last_used_at = utcnow()
        scope = route.scope if route is not None else None
        if scope == "org":
            if key.project_id is not None:
                raise ApiError(403, "Invalid API key. Organization-scoped API key required for this operation.")
            if not self.org_entitled:
                raise ApiError(403, ENTITLEMENT_MESSAGE, error="This feature is not available on your current plan.")
        elif scope == "project" and key.project_id is None:
            raise ApiError(403, "Invalid API key. Are you using an organization key? This endpoint needs a "
                                "project-scoped API key.")
        return key

    def _validated_input(self, op: Operation, route: Route, request: Request) -> tuple[dict[str, Any], Any]:
        query, errors = self.spec.coerce_query(op, request.query)
        body: Any = None
        raw = _decompress(request.body, request.headers.get("content-encoding", ""))
        request.body = raw
        # Like Next.js' body parser: only a JSON content type makes the body JSON.
        is_json = "json" in request.headers.get("content-type", "").lower()
        if raw and is_json:
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, "Invalid JSON body", violation=True) from None
        if route.validate_body and op.body_schema is not None:
            if body is None and op.body_required:
                errors.append("request body is required")
            elif body is not None:
                errors.extend(self.spec.validate_body(op, body))
        if errors:
            raise ApiError(400, "Invalid request data: " + "; ".join(errors), violation=True, details=errors)
        return query, body

    def _check_response(self, op: Operation, response: Response) -> None:
        if response.raw is not None:
            return
        if response.status in (204,) or response.body is None:
            problems = [] if response.status == 204 else self.spec.validate_response(op, response.status, None)
        else:
            problems = self.spec.validate_response(op, response.status, response.body)
        for problem in problems:
            self.record_violation(f"response: {op.method} {op.template} {response.status}: {problem}")

    # -------------------------------------------------------------- control
    def _control(self, request: Request) -> Response:
        """``/_standin/*``: inspect and script the stand-in when it runs as a subprocess."""
        action = request.raw_path[len(CONTROL_PREFIX):].strip("/")
        with self._lock:
            if action == "violations" and request.method == "GET":
                return Response(200, {"violations": list(self.violations)})
            if action == "requests" and request.method == "GET":
                return Response(200, {"requests": list(self.requests)})
            if action == "log" and request.method == "DELETE":
                self.clear_log()
                return Response(200, {})
            if action == "faults" and request.method == "POST":
                fault = self.inject(**json.loads(request.body or b"{}"))
                return Response(200, {"remaining": fault.remaining})
            if action == "faults" and request.method == "DELETE":
                self.clear_faults()
                return Response(200, {})
        return _error(ApiError(404, f"Unknown stand-in control endpoint {request.method} {request.raw_path}"))


def _credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def _decompress(body: bytes, encoding: str) -> bytes:
    if body and encoding.strip().lower() == "gzip":
        try:
            return gzip.decompress(body)
        except OSError:
            raise ApiError(400, "Invalid gzip body", violation=True) from None
    return body


def _error(exc: ApiError) -> Response:
    return Response(exc.status, exc.body())


def _fault_response(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        seconds = fault.retry_after
        headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
    assert fault.status is not None
    return Response(fault.status, ApiError(fault.status, "Injected fault (Langfuse stand-in)").body(), headers)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: clients reuse connections, which keeps paging fast."""

    protocol_version = "HTTP/1.1"
    server_version = "LangfuseStandin/1"
    # Headers and body in one buffered write with TCP_NODELAY: otherwise Nagle plus
    # delayed ACKs add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _serve(self) -> None:
        split = urlsplit(self.path)
        request = Request(
            method=self.command, raw_path=split.path, query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()}, body=self._read_body(),
        )
        standin: LangfuseStandin = self.server.standin  # type: ignore[attr-defined]
        response = standin.handle(request)
        if response.raw is not None:
            payload = response.raw
        elif response.status == 204:
            payload = b""
        else:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
        try:
            self.send_response(response.status)
            if response.status != 204:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out during a delay fault)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunks(self) -> Iterable[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass
