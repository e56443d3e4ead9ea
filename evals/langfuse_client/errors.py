"""`LangfuseError`, and what a failed call becomes: a message by status or by kind of failure that
does not repeat the far side's answer (the host is a tenant's, and its answer could be an internal
page), whether retrying may help (`permanent`), and whether the request left at all (`unsent`)."""

from __future__ import annotations

import httpx
import pydantic
from langfuse.api.core.api_error import ApiError

from evals.langfuse_client.transport import AnswerTooLarge, FailedAnswer
from portal.outbound import OutboundRefused

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left this host


class LangfuseError(Exception):
    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False,
                 unsent: bool = False, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        self.unsent = unsent
        self.retry_after = retry_after


def status_error(host: str, response: httpx.Response, hint: str | None) -> LangfuseError:
    """What failed, by status; `hint` is Langfuse's own reason for refusing a request body, if any."""
    status = response.status_code
    if 300 <= status < 400:
        return LangfuseError(f"Langfuse at {host} answered with a redirect ({status}); enter the address it "
                             "redirects to as the host.", status=status, permanent=True)
    if status == 401:
        return LangfuseError("Langfuse rejected the keys (401): check the public and secret key of the project.",
                             status=status, permanent=True)
    if status == 403:
        return LangfuseError("Langfuse refused this (403): the keys lack the permission for it.", status=status,
                             permanent=True)
    if status == 404:
        return LangfuseError(f"Not found in Langfuse (404): {response.request.method} {response.request.url.path}",
                             status=status, permanent=True)
    return LangfuseError(f"Langfuse answered {status}" + (f": {hint}" if hint else "."), status=status,
                         permanent=status not in RETRY_STATUSES, retry_after=response.headers.get("Retry-After"))


def langfuse_message(response: httpx.Response) -> str | None:
    """The JSON `message` of a refusal, one short printable line (a dataset item of another dataset,
    a bad score value: the user needs it to fix the request)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        return None
    line = "".join(c for c in message if c.isprintable()).strip()
    return line[:200] or None


# Failures other than a status: what the SDK call raised, and the LangfuseError it becomes.
CALL_FAILURES = (FailedAnswer, AnswerTooLarge, OutboundRefused, httpx.HTTPError, ApiError, pydantic.ValidationError,
                 RecursionError)


def failure_error(host: str, what: str, exc: Exception) -> LangfuseError:
    """The error of a call that raised `exc` (one of CALL_FAILURES but FailedAnswer); `what` names the call."""
    if isinstance(exc, OutboundRefused):
        return LangfuseError(f"Langfuse at {host}: {exc}", permanent=True, unsent=True)
    if isinstance(exc, httpx.TimeoutException):
        return LangfuseError(f"Langfuse at {host} timed out ({type(exc).__name__}).", unsent=isinstance(exc, UNSENT))
    if isinstance(exc, httpx.TransportError):
        return LangfuseError(f"Langfuse at {host} cannot be reached ({type(exc).__name__}).",
                             unsent=isinstance(exc, UNSENT))
    if isinstance(exc, AnswerTooLarge):
        return LangfuseError(f"Langfuse at {host} answered more than {exc.limit // 2**20} MiB to one request; check "
                             "the host.", permanent=True)
    if isinstance(exc, ApiError):  # the SDK's only error for a 2xx answer: its body is not JSON
        return LangfuseError(f"Langfuse at {host} did not answer with JSON; check the host.", status=exc.status_code,
                             permanent=True)
    # pydantic.ValidationError (the SDK's model does not fit), RecursionError (nesting too deep), httpx.DecodingError
    return LangfuseError(f"Langfuse at {host} answered {what} with an unexpected shape; check the host.",
                         permanent=True)
