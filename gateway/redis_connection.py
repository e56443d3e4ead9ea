"""The Redis the portal shares with the gateway (its state documents, spend
counters and usage stream): one client per thread and URL, a plain Redis or
one behind Sentinel (`gateway.plugin.redisconn`)."""

from __future__ import annotations

import threading

import redis
from django.conf import settings

from gateway.plugin import redisconn

_local = threading.local()


def redis_client() -> redis.Redis:
    clients = getattr(_local, "redis", None)
    if clients is None:
        clients = _local.redis = {}
    client = clients.get(settings.REDIS_URL)
    if client is None:
        client = clients[settings.REDIS_URL] = redisconn.from_url(
            settings.REDIS_URL, decode_responses=True, socket_timeout=2, socket_connect_timeout=2,
            health_check_interval=30)
    return client
