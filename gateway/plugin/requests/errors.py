"""Refusals: the OpenAI-style errors the gateway answers itself, and the body limits they name."""

from __future__ import annotations

import os
from typing import Any

MAX_BODY_BYTES = int(os.environ.get("PORTAL_GATEWAY_MAX_BODY_BYTES", str(16 * 1024 * 1024)))
MAX_DEPTH = int(os.environ.get("PORTAL_GATEWAY_MAX_JSON_DEPTH", "64"))


class Refusal(Exception):
    """A request the gateway answers itself, with an OpenAI-style error."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str = "invalid_request_body") -> Refusal:
    return Refusal(400, message, code, param)


def too_large(size: int | None = None) -> Refusal:
    limit = f"{MAX_BODY_BYTES / (1024 * 1024):g} MiB"
    got = f" (this one has {size / (1024 * 1024):.1f} MiB)" if size is not None else ""
    return Refusal(413, f"The request body is larger than this gateway accepts: at most {limit}{got}. "
                        "Send a shorter prompt or fewer attachments.", "request_too_large")
