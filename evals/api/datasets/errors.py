"""The datasets API's errors: a file over the import limit (413), and Langfuse refusing (400) or
not answering (503) while a dataset is built, pushed or pulled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rest_framework import exceptions, status

from evals.langfuse_client import LangfuseError
from evals.services.datasets import too_large_message


class FileTooLarge(exceptions.APIException):
    """413, with the limit (settings.EVALS_MAX_UPLOAD_BYTES) in the message."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is too large."
    default_code = "too_large"

    def __init__(self) -> None:
        super().__init__(too_large_message())


class LangfuseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Langfuse did not answer; nothing was changed in the portal. Try again."
    default_code = "langfuse_unavailable"


@contextmanager
def langfuse_errors() -> Iterator[None]:
    """Langfuse refusing (keys, a bad request) is a 400; Langfuse down after the client's retries, a 503."""
    try:
        yield
    except LangfuseError as exc:
        if exc.permanent:
            raise exceptions.ValidationError({"langfuse": [str(exc)[:500]]}) from None
        raise LangfuseUnavailable(f"{str(exc)[:300]} Nothing was changed in the portal; try again.") from None
