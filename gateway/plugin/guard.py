"""The gateway's front door: an ASGI wrapper around the whole LiteLLM app.

LiteLLM exposes some 600 routes (management, UI, pass-through to providers,
files, batches, MCP, realtime...), several of which never call custom auth.
This wrapper decides before any of them runs:

- portal keys (anything but the master key) reach only the LLM routes and
  /v1/models and /v1/model/info; every other path answers 404, and a
  websocket is closed;
- the master key reaches everything except the LLM routes (403): operators
  and the portal keep LiteLLM's management and health routes, but the master
  key never answers a tenant's model;
- an LLM request's body is read (bounded), parsed and held to the route's
  public API (`requests`), and LiteLLM is handed the checked body;
  LiteLLM's request-steering headers and query parameters are dropped;
- LiteLLM's own words never reach the client: an error answer of an LLM
  route keeps the provider's message without LiteLLM's exception names and
  routing commentary (or gets a plain one), and LiteLLM's response headers
  (model group, deployment, api_base, spend) are dropped;
- when the request is over, a reservation that no callback settled is
  handed to the settlement watch (`callbacks`), so a client that hangs up or
  an error LiteLLM never reports cannot hold a budget;
- every request gets an id (the client's `X-Request-ID`, or a new one: `logs`),
  returned in `x-request-id`, is counted (`metrics`) and ends with an access
  line; `GET /portal/metrics` is the scrape of those counters.

Standard library only (and the plugin's own modules)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.plugin import logs, metrics, requests

log = logging.getLogger("portal.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INFO_ROUTES = frozenset({"/models", "/v1/models", "/model/info", "/v1/model/info"})
# The `endpoint` label of the request metrics: the LLM routes' kinds, and these.
ENDPOINTS = {"/models": "models", "/v1/models": "models", "/model/info": "model_info",
             "/v1/model/info": "model_info"}
OPEN_ROUTES = frozenset({"/health/liveliness", "/health/liveness"})
# Every header LiteLLM takes a key from (proxy/auth/user_api_key_auth.py).
KEY_HEADERS = (b"authorization", b"x-api-key", b"x-litellm-api-key", b"api-key", b"x-goog-api-key",
               b"ocp-apim-subscription-key")
# What the master key reaches: LiteLLM's health and model-list routes, for operators. Nothing else:
# in managed mode LiteLLM has no database, so its management routes (/key/*, /team/*, /model/new,
# the UI...) have nothing to manage (one of them took a proxy down), and everything else it serves -
# the LLM routes under every alias (/engines/..., /openai/deployments/..., images, audio, rerank,
# realtime, pass-through) - would answer any organization's model groups.
MASTER_PREFIXES = ("/health", "/models", "/v1/models", "/model/info", "/v1/model/info", "/model_group/info")
KEPT_LITELLM_HEADERS = frozenset({b"x-litellm-api-key"})
RESERVATION = "portal.reservation"  # set in the ASGI scope by custom auth, read here when the request ends
LLM_LIST = "chat/completions, completions, embeddings, responses and messages (under /v1), /v1/models and " \
           "/v1/model/info"


def master_key() -> str:
    return os.environ.get("LITELLM_MASTER_KEY", "")


def presented_keys(headers: list[tuple[bytes, bytes]]) -> list[str]:
    found = []
    for name, value in headers:
        if name.lower() in KEY_HEADERS:
            text = value.decode("latin-1").strip()
            if text.lower().startswith("bearer "):
                text = text[7:].strip()
            found.append(text)
    return found


def is_master(headers: list[tuple[bytes, bytes]]) -> bool:
    master = master_key()
    return bool(master) and any(hmac.compare_digest(k.encode("latin-1", "replace"), master.encode("latin-1", "replace"))
                                for k in presented_keys(headers))


def master_may_use(route: str) -> bool:
    return route == "/" or route.startswith(MASTER_PREFIXES)


def clean_headers(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """Without LiteLLM's steering headers (timeouts, retries, tags, callbacks, spend metadata...)."""
    kept = [(n, v) for n, v in headers
            if n.lower() not in (b"content-length", b"content-type", b"transfer-encoding", b"content-encoding")
            and (not n.lower().startswith(b"x-litellm-") or n.lower() in KEPT_LITELLM_HEADERS)]
    return [*kept, (b"content-type", b"application/json"), (b"content-length", str(length).encode())]


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for n, v in headers:
        if n.lower() == name:
            return v.decode("latin-1")
    return ""


async def respond(send: Send, refusal: requests.Refusal, reason_code: str | None = None) -> None:
    """Send a refusal (counted in the metrics by its code, or by `reason_code` where the code is not enough)."""
    metrics.refused(refusal.status, reason_code or refusal.code)
    payload = json.dumps(refusal.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def read_body(scope: Scope, receive: Receive) -> bytes:
    declared = header(scope["headers"], b"content-length")
    if declared.isascii() and declared.isdigit() and int(declared) > requests.errors.MAX_BODY_BYTES:
        raise requests.too_large(int(declared))
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > requests.errors.MAX_BODY_BYTES:
            raise requests.too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


INTERNAL = ("litellm", "Exception", "Traceback", "object has no attribute", 'File "', "model group", "router",
            "fallback", "deployment", "os.environ")
EXCEPTION_NAME = re.compile(r"\b(?:litellm\.)?\w*(?:Error|Exception)\b(?:\s*-\s*|:\s*)")
PLAIN = {400: "The model's provider refused the request as it was sent.",
         401: "The model's provider refused the organization's credential; tell an admin of your organization.",
         403: "The model's provider refused the organization's credential; tell an admin of your organization.",
         404: "The model's provider does not know the model this route uses; tell an admin of your organization.",
         408: "The model's provider did not answer in time; retry in a moment.",
         429: "The model's provider is rate limiting this route; retry in a moment."}
# Errors a user can act on, by LiteLLM's class for them, in words of the user's.
KNOWN_ERRORS = (
    (("ContextWindowExceeded", "context_length_exceeded"),
     "The request is longer than the model's context window: shorten it, or use a route with a longer context."),
    (("ContentPolicyViolation", "content_policy_violation"),
     "The model's provider refused the request under its content policy."),
)
DROPPED_RESPONSE_HEADERS = (b"x-litellm-", b"llm_provider-")
# The caller's own cost of this request: the portal's workers read it (evals/gateway_client.py),
# and it tells a client nothing about anyone else.
KEPT_RESPONSE_HEADERS = frozenset({b"x-litellm-response-cost"})


def public_message(message: str, status: int, route: str | None = None, group: str | None = None) -> str:
    """The provider's part of an error message, without LiteLLM's exception names and commentary."""
    for markers, known in KNOWN_ERRORS:
        if any(m in message for m in markers):
            return known
    text = re.split(r"\n\s*(?:LiteLLM|Received Model Group|Available Model Group|Model:|Traceback)", message, maxsplit=1)[0]
    if group and route:
        text = text.replace(group, route)
    text = EXCEPTION_NAME.sub("", text).strip()
    if not text or any(marker.lower() in text.lower() for marker in INTERNAL):
        return PLAIN.get(status, "The model's provider failed to answer; retry in a moment, or tell an admin of "
                                 "your organization if it goes on.")
    return text[:2000]


def public_error(payload: bytes, status: int, route: str | None, group: str | None) -> bytes:
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = public_message(error["message"], status, route, group)
        kind, code = error.get("type"), error.get("code")
    else:
        message = public_message("", status)
        kind, code = None, None
    if not isinstance(kind, str) or any(m.lower() in kind.lower() for m in INTERNAL):
        kind = "invalid_request_error" if status < 500 else "api_error"
    code = code if isinstance(code, (str, int)) and not any(m.lower() in str(code).lower() for m in INTERNAL) \
        else str(status)
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def public_headers(headers: list[tuple[bytes, bytes]], length: int | None = None) -> list[tuple[bytes, bytes]]:
    kept = [(n, v) for n, v in headers
            if (n.lower() in KEPT_RESPONSE_HEADERS or not n.lower().startswith(DROPPED_RESPONSE_HEADERS))
            and (length is None or n.lower() != b"content-length")]
    return kept if length is None else [*kept, (b"content-length", str(length).encode())]


def plain_body(start: Message, payload: bytes) -> bytes:
    """The body as LiteLLM wrote it: its GZip middleware compresses larger answers
    (the rewritten body goes out uncompressed, without a content-encoding)."""
    if header(list(start.get("headers", [])), b"content-encoding").lower() != "gzip":
        return payload
    import gzip
    import zlib

    try:
        return gzip.decompress(payload)
    except (OSError, EOFError, zlib.error):
        return b""


def public_send(scope: Scope, send: Send) -> Send:
    """`send` for an LLM route's answer: error bodies rewritten (`public_error`), LiteLLM's headers dropped."""
    held: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            if message.get("status", 200) >= 400:
                held["start"] = message
                return
            reservation = scope.get(RESERVATION)
            if isinstance(reservation, dict):
                reservation["answered"] = True  # served: a settlement the watch makes charges the hold
            message = {**message, "headers": public_headers(list(message.get("headers", [])))}
            await send(message)
            return
        if message["type"] == "http.response.body" and "start" in held:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            portal = scope.get(RESERVATION) or {}
            body = public_error(plain_body(start, b"".join(chunks)), start["status"], portal.get("route"),
                                portal.get("group"))
            headers = [(n, v) for n, v in public_headers(list(start.get("headers", [])), len(body))
                       if n.lower() not in (b"content-type", b"content-encoding")]
            await send({**start, "headers": [*headers, (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


def not_found() -> requests.Refusal:
    return requests.Refusal(404, f"Not found. With a portal key this gateway serves {LLM_LIST}.",
                            "route_not_found", kind="not_found_error")


def master_refused() -> requests.Refusal:
    return requests.Refusal(403, "The master key does not answer LLM requests (it reaches LiteLLM's management "
                                 "and health routes only): call models with a key issued in the portal.",
                            "master_key_not_allowed", kind="permission_error")


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            # LiteLLM's websockets are realtime LLM routes: no portal key may use them (they bypass the
            # body policy), and the master key never answers a model.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path", "").rstrip("/") or "/"
        if route == metrics.PATH:
            status, code = await metrics.serve(scope, send)
            if code:
                metrics.refused(status, code)
            return
        ctx = logs.RequestContext(logs.from_headers(scope.get("headers", [])))
        token = logs.current.set(ctx)
        answer = Answer(send, ctx.id)
        started = time.perf_counter()
        try:
            await self.dispatch(scope, receive, answer.send, route)
        except BaseException as exc:
            answer.raised = exc
            raise
        finally:
            ended(scope, route, answer, ctx, time.perf_counter() - started)
            logs.current.reset(token)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        master = is_master(scope.get("headers", []))
        kind = requests.ROUTES.get(route)
        if kind is None:
            await self.other(scope, receive, send, route, master=master)
        elif master:
            await respond(send, master_refused())
        elif scope.get("method") == "OPTIONS":  # a browser's CORS preflight: LiteLLM's CORS middleware answers it
            await self.app(normalized(scope, route), receive, send)
        elif scope.get("method") != "POST":
            await respond(send, requests.Refusal(405, f"Use POST for {route}.", "method_not_allowed"))
        else:
            await self.llm(scope, receive, send, route, kind)

    async def other(self, scope: Scope, receive: Receive, send: Send, route: str, *, master: bool) -> None:
        """Every route but the LLM ones: the master key's few, the open and model-list routes, else 404."""
        if master and master_may_use(route):
            await self.app(scope, receive, send)
        elif master:
            await respond(send, master_refused())
        elif route in OPEN_ROUTES or (route in INFO_ROUTES and scope.get("method") in ("GET", "HEAD", "OPTIONS")):
            await self.app(normalized(scope, route), receive, public_send(scope, send))
        else:
            await respond(send, not_found())

    async def llm(self, scope: Scope, receive: Receive, send: Send, route: str, kind: str) -> None:
        """An LLM route: the key checked before the body is read, the body checked before LiteLLM reads it,
        and the request's reservation released however LiteLLM ends it."""
        from gateway.plugin import auth

        refused = await auth.precheck(presented_keys(scope.get("headers", [])))
        if refused is not None:
            status, message, code = refused
            await respond(send, requests.Refusal(status, message, code, kind="authentication_error"),
                          "no_key" if message == auth.NO_KEY else None)
            return
        try:
            checked = await checked_body(scope, receive, kind)
        except requests.Refusal as refusal:
            await respond(send, refusal)
            return
        except ConnectionAbortedError:
            return
        scope["headers"] = clean_headers(scope["headers"], len(checked))
        try:
            await self.app(normalized(scope, route), replaying(checked, receive), public_send(scope, send))
        finally:
            reservation = scope.get(RESERVATION)
            if reservation is not None:
                from gateway.plugin.callbacks import portal_callbacks

                portal_callbacks.request_ended(reservation)


class Answer:
    """The client's `send`, with the request id on the answer's headers and its status noted."""

    __slots__ = ("_send", "header", "status", "raised")

    def __init__(self, send: Send, request_id: str) -> None:
        self._send, self.header = send, (logs.REQUEST_ID_HEADER, request_id.encode())
        self.status: int = 0
        self.raised: BaseException | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message.get("status", 200)
            headers = [h for h in message.get("headers", []) if h[0].lower() != logs.REQUEST_ID_HEADER]
            message = {**message, "headers": [*headers, self.header]}
        await self._send(message)


def ended(scope: Scope, route: str, answer: Answer, ctx: logs.RequestContext, seconds: float) -> None:
    """Count the request and write its access line. A refusal is an error answer to a request that holds
    no reservation (custom auth or the guard refused it); with one, the error came after admission."""
    status = answer.status
    if status == 0:
        failed = answer.raised is not None and not isinstance(answer.raised, (asyncio.CancelledError,
                                                                              ConnectionError))
        outcome, status = ("failed", 500) if failed else ("aborted", 499)
    elif status < 400:
        outcome = "served"
    else:
        outcome = "failed" if scope.get(RESERVATION) is not None else "refused"
    endpoint = requests.ROUTES.get(route) or ENDPOINTS.get(route) or "other"
    metrics.request(endpoint, outcome, status)
    if route not in OPEN_ROUTES:  # a load balancer's probes every few seconds are not worth a line each
        # Any other path is the client's text (percent-decoded: it may hold a newline): printable only.
        path = route if endpoint != "other" else "".join(c if c.isprintable() else "?" for c in route[:200])
        logs.access(str(scope.get("method", ""))[:10], path, status, outcome, ctx.reason, seconds)


def normalized(scope: Scope, route: str) -> Scope:
    """No query string, no trailing slash (LiteLLM would redirect it to the Host header's name)."""
    scope["query_string"] = b""
    scope["path"] = route
    return scope


async def checked_body(scope: Scope, receive: Receive, kind: str) -> bytes:
    """The body LiteLLM gets: the client's bytes if the policy changed nothing, else the admitted body."""
    raw = await read_body(scope, receive)
    body = requests.parse(raw, header(scope["headers"], b"content-type"))
    admitted = requests.admit(kind, body)
    return raw if admitted == body else requests.encode(admitted)


def replaying(body: bytes, receive: Receive) -> Receive:
    """The already-read body once, then the client's own messages (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


_installed = False  # set by install(); custom auth refuses every request until it is


def installed() -> bool:
    return _installed


def install() -> None:
    """Wrap LiteLLM's app once, whether or not its middleware stack is built yet
    (`gateway.plugin.install`, at the proxy's worker startup)."""
    global _installed
    wrap_app("_portal_guard", Guard)
    _installed = True


def wrap_app(flag: str, layer: Callable[[Any], Any]) -> bool:
    """Put `layer` around LiteLLM's ASGI app once (marked by `flag`), whether or not its middleware stack
    is built yet; False when it was already there."""
    from litellm.proxy.proxy_server import app

    if getattr(app, flag, False):
        return False
    build = app.build_middleware_stack

    def wrapped() -> Any:
        return layer(build())

    app.build_middleware_stack = wrapped  # type: ignore[method-assign]
    if app.middleware_stack is not None:
        app.middleware_stack = layer(app.middleware_stack)
    setattr(app, flag, True)
    return True
