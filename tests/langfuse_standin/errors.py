"""The one exception handlers raise to answer with an error."""

from __future__ import annotations

from typing import Any

ERROR_NAMES = {
    400: "InvalidRequestError",
    401: "UnauthorizedError",
    403: "ForbiddenError",
    404: "LangfuseNotFoundError",
    405: "MethodNotAllowedError",
    409: "ConflictError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}


class ApiError(Exception):
    """An error response ``{"message": ..., "error": ...}`` like Langfuse sends.

    ``violation=True`` marks a client request that breaks the API contract (schema
    or a rule the spec documents, e.g. "limit must be <= 100"); the server records
    those in ``server.violations`` so tests of client code notice them even when the
    client swallows the 400. Plain domain errors (unknown id, name taken) are not
    contract violations.
    """

    def __init__(self, status: int, message: str, *, violation: bool = False, error: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.violation = violation
        self.error = error or ERROR_NAMES.get(status, "Error")
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "error": self.error}
        if self.details is not None:
            body["details"] = self.details
        return body
