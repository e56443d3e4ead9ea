"""The plugin's log lines, each with the request's id.

The guard takes the id from the request's `X-Request-ID` when it is well
formed (1 to 128 of `[A-Za-z0-9._:-]`, the portal's own rule: the portal
sends its request's id on every call it makes to the gateway), else makes one;
it holds it in `current` (a contextvar, so every line logged while the
request runs has it, LiteLLM's callbacks included), returns it in the
response's `x-request-id` header and writes one access line when the request
ends (`PORTAL_GATEWAY_ACCESS_LOG=0` turns that off).

Lines of the plugin's loggers (`portal.gateway*`) go to stderr: JSON (keys
`time`, `level`, `logger`, `message`, `request_id`, `process` (which worker)
and the line's extras, as the portal's) when `PORTAL_GATEWAY_LOG_FORMAT=json`, or when it is unset and
LiteLLM's `JSON_LOGS` is true; else plain text. LiteLLM's own records (its
loggers and uvicorn's) get a `request_id` attribute too, which LiteLLM's JSON
formatter prints.

Standard library only."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
import uuid
from typing import Any

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
NONE = "-"


class RequestContext:
    """What the plugin knows of the request being served: its id, and why it was refused (for the access
    line). One object per request, shared by every copy of the context (LiteLLM's tasks, middleware)."""

    __slots__ = ("id", "reason")

    def __init__(self, request_id: str) -> None:
        self.id, self.reason = request_id, ""


current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("portal_gateway_request",
                                                                                 default=None)


def current_id() -> str:
    ctx = current.get()
    return ctx.id if ctx is not None else NONE

ACCESS_LOG = os.environ.get("PORTAL_GATEWAY_ACCESS_LOG", "1").strip().lower() not in ("0", "false", "no", "off")
access_log = logging.getLogger("portal.gateway.access")
PLAIN = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "uvicorn.access", "uvicorn.error")
# LogRecord's own attributes: whatever else a record has came from `extra=` and goes into the JSON line.
RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's request id if it is well formed, else a new one (uuid4 hex)."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if REQUEST_ID_RE.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record that has none ("-" outside a request)."""

    def __init__(self, always: bool = True) -> None:
        super().__init__()
        self.always = always

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            ctx = current.get()
            if ctx is not None:
                record.request_id = ctx.id
            elif self.always:
                record.request_id = NONE
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NONE), "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in RECORD_ATTRIBUTES and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def json_format() -> bool:
    chosen = os.environ.get("PORTAL_GATEWAY_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "plain"):
        return chosen == "json"
    return os.environ.get("JSON_LOGS", "").strip().lower() == "true"


_installed = False


def install() -> None:
    """The plugin's handler on `portal.gateway` (INFO, stderr) and the id on LiteLLM's records; once."""
    global _installed
    if _installed:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json_format() else logging.Formatter(PLAIN))
    logger = logging.getLogger("portal.gateway")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # LiteLLM's root handler (JSON_LOGS) would print every line twice
    stamp = RequestIdFilter(always=False)
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).addFilter(stamp)
    _installed = True


def printable(text: str) -> str:
    """`text` with control (and other non-printable) characters escaped: a client's path (percent-decoded by
    the server, so `%0a` is a newline) must not start a log line of its own."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def access(method: str, path: str, status: int, outcome: str, reason: str, seconds: float) -> None:
    """One line per request, when it ends (the path escaped: `printable`)."""
    if ACCESS_LOG:
        method, path = printable(method), printable(path)
        access_log.info("%s %s %s %s", method, path, status, outcome,
                        extra={"method": method, "path": path, "status": status, "outcome": outcome,
                               "reason": reason, "duration_ms": round(seconds * 1000, 2)})
