"""One error shape for the API: DRF's (`{"field": ["message"]}` for 400,
`{"detail": "..."}` otherwise), and never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from gateway.backends import GatewayError
from portal.exceptions import Conflict

log = logging.getLogger(__name__)


def validation_detail(exc: DjangoValidationError) -> Any:
    if hasattr(exc, "error_dict"):
        return {field: [m for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"non_field_errors": exc.messages}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(validation_detail(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, RequestDataTooBig):
        return Response({"detail": "The request body is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, Conflict):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, GatewayError):  # a gateway that keeps secrets itself (litellm-admin) could not take a key
        log.warning("gateway error: %s", exc)
        return Response({"detail": "The gateway could not register the key; nothing was created. Try again."},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, IntegrityError):
        log.warning("integrity error in %s: %s", context.get("view").__class__.__name__, type(exc).__name__)
        return Response({"detail": "This conflicts with an existing object."}, status=status.HTTP_409_CONFLICT)
    log.exception("unhandled error in %s", context.get("view").__class__.__name__)
    return Response({"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def json_404(request: Any, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=404)


def json_500(request: Any) -> JsonResponse:
    return JsonResponse({"detail": "Internal server error."}, status=500)
