"""Liveness and readiness probes.

`/healthz`: the process answers (nothing else is touched: a database outage must not get every web
process restarted). `/readyz`: the database and Redis answer; 503 naming which did not, never why (the
reason goes to the log). Both are answered by `portal.middleware.HealthMiddleware` ahead of host checks
and the HTTPS redirect, and routed in portal/urls.py too.
"""

from __future__ import annotations

import logging

import redis
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from gateway.redis_connection import redis_client

log = logging.getLogger(__name__)


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except DatabaseError as exc:
        log.warning("readyz: the database did not answer: %s: %s", type(exc).__name__, exc)
        connection.close()
        return False


def redis_ok() -> bool:
    try:
        return bool(redis_client().ping())
    except (redis.RedisError, OSError) as exc:
        log.warning("readyz: Redis did not answer: %s: %s", type(exc).__name__, exc)
        return False


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": "ok" if database_ok() else "fail", "redis": "ok" if redis_ok() else "fail"}
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "fail", "checks": checks}, status=200 if ready else 503)
