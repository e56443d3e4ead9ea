"""The web's outermost middleware: the request id, and the health probes answered before anything else."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from portal import health
from portal.logs import REQUEST_ID_HEADER, accept_request_id, bind_request_id

Handler = Callable[[HttpRequest], HttpResponseBase]


class RequestIdMiddleware:
    """Binds the request's id (a well-formed incoming `X-Request-ID`, else a new one) for its log lines and
    its calls to the gateway, and returns it in the response's `X-Request-ID`."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        rid = accept_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = rid  # type: ignore[attr-defined]
        with bind_request_id(rid):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = rid
        return response


class HealthMiddleware:
    """`GET /healthz` and `GET /readyz` answered here, before SecurityMiddleware and CommonMiddleware: a load
    balancer probing by IP address (a Host not in ALLOWED_HOSTS) or over plain HTTP behind the TLS proxy
    gets the probe's answer, not a 400 or a redirect. Safe: neither reads the Host header nor builds a URL,
    and they say only "ok" or "fail" per dependency."""

    PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": health.healthz, "/readyz": health.readyz}

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        probe = self.PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)
