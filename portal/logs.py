"""Log lines and the request id.

Every request gets an id: a well-formed incoming `X-Request-ID` (1 to 128 of `A-Z a-z 0-9 . _ : -`), else
a new one. It is on every log line written while the request runs (the `request_id` attribute, added by
`RequestIdFilter` on the handler), in the response's `X-Request-ID`, on every call the portal makes to the
gateway (`request_id_headers()`), and in the message headers of the Celery tasks the request queues, so a
worker's lines and calls carry it too. `LOG_FORMAT=json` writes one JSON object a line (python-json-logger).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TASK_HEADER = "request_id"

_current: ContextVar[str | None] = ContextVar("portal_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The incoming id if it is well formed (it goes into log lines and headers), else a new one."""
    if value and REQUEST_ID_RE.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return _current.get()


@contextmanager
def bind_request_id(request_id: str | None = None) -> Iterator[str]:
    """Log lines and gateway calls inside carry `request_id` (a new one when not given)."""
    bound = accept_request_id(request_id)
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)


def request_id_headers() -> dict[str, str]:
    """The header to send on a call to the gateway: the current id, or a new one outside any request."""
    return {REQUEST_ID_HEADER: current_request_id() or new_request_id()}


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record ("-" outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            rid = _current.get()
            if rid is None:  # django.request's line of a 4xx is written after the middleware returned
                rid = getattr(getattr(record, "request", None), "request_id", None)
            record.request_id = rid if isinstance(rid, str) and rid else "-"
        return True


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict: one console handler on stderr, plain or JSON, with the request id."""
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FORMAT,
                     "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                     "timestamp": False}
    else:
        formatter = {"format": PLAIN_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "portal.logs.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default",
                                 "filters": ["request_id"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "INFO"}},
    }


@before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """A task queued while a request (or task) runs carries its id in the message headers."""
    rid = _current.get()
    if headers is not None and rid and TASK_HEADER not in headers:
        headers[TASK_HEADER] = rid


_task_tokens: dict[str, Any] = {}


@task_prerun.connect
def _bind_task_request_id(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """The worker runs the task under the id it was queued with (a new one for beat's tasks)."""
    sent = getattr(getattr(task, "request", None), TASK_HEADER, None)
    rid = accept_request_id(sent if isinstance(sent, str) else _current.get())
    if task_id:
        _task_tokens[task_id] = _current.set(rid)


@task_postrun.connect
def _unbind_task_request_id(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        try:
            _current.reset(token)
        except ValueError:  # set in another context (a thread pool): nothing of ours to undo here
            _current.set(None)
