"""Beat's heartbeat: how `doctor` (and compose's health check) know that the one beat is alive.

Beat runs `HeartbeatScheduler` (settings' CELERY_BEAT_SCHEDULER, or `celery beat --scheduler
portal.ops.beat:HeartbeatScheduler`): django-celery-beat's database scheduler that, on its ticks (at
most every 5 s, the scheduler's max interval), writes HEARTBEAT_KEY into the portal's Redis at most every
HEARTBEAT_EVERY seconds. A heartbeat proves the scheduler loop itself turns, not only that the process
exists. `doctor --only beat` passes while the heartbeat is at most MAX_AGE seconds old."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import redis
from django_celery_beat.schedulers import DatabaseScheduler

from gateway.redis_connection import redis_client

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "portal:ops:beat"
HEARTBEAT_EVERY = 10.0
HEARTBEAT_TTL = 300
MAX_AGE = 60.0


def write_heartbeat(now: float | None = None) -> None:
    record = {"at": round(now or time.time(), 3), "pid": os.getpid(), "host": socket.gethostname()}
    redis_client().set(HEARTBEAT_KEY, json.dumps(record), ex=HEARTBEAT_TTL)


def read_heartbeat() -> dict[str, Any] | None:
    """The last heartbeat ({"at", "pid", "host"}), None when there is none (raises on Redis errors)."""
    raw = redis_client().get(HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        float(record["at"])
    except (ValueError, TypeError, KeyError):
        return None
    return record if isinstance(record, dict) else None


class HeartbeatScheduler(DatabaseScheduler):  # type: ignore[misc]
    """The database scheduler, writing a heartbeat as it ticks."""

    _last_beat = 0.0
    _failing = False

    def tick(self, *args: Any, **kwargs: Any) -> Any:
        interval = super().tick(*args, **kwargs)
        now = time.time()
        if now - self._last_beat >= HEARTBEAT_EVERY:
            try:
                write_heartbeat(now)
            except redis.RedisError as exc:
                if not self._failing:
                    log.warning("beat heartbeat not written (%s); doctor will report beat as down",
                                type(exc).__name__)
                self._failing = True
            else:
                self._last_beat, self._failing = now, False
        return interval
