"""Liveness and readiness probes (`/healthz`, `/readyz`). Owner: helper A (shell: not built yet)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "not built"}, status=501)


def readyz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "not built"}, status=501)
