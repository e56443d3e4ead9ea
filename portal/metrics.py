"""The web's Prometheus endpoint (`/metrics`). Owner: helper B (shell: not built yet)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("not built\n", status=501, content_type="text/plain")
