"""Attempts counted per client in Redis, for the pages anyone can reach: sign-in (failed
passwords, per account and per address) and password reset (e-mails sent, per account and per
address). Django has neither; without them a password can be guessed without end and a mailbox
flooded with reset mails.

Fixed windows (`INCR` + `EXPIRE NX`): an attempt is counted, and refused when the count passes
the limit, until the window ends. Keys hold a SHA-256 of what they count (an e-mail, an address),
never the value itself. If Redis does not answer, the attempt is allowed (and logged): a throttle
must not lock everyone out."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis

from gateway.redis_connection import redis_client

log = logging.getLogger(__name__)
PREFIX = "portal:throttle:"


@dataclass(frozen=True)
class Limit:
    scope: str  # what is counted, e.g. "login-user"
    attempts: int  # allowed per window
    window: int  # seconds

    def key(self, ident: str) -> str:
        return PREFIX + self.scope + ":" + hashlib.sha256(ident.strip().lower().encode()).hexdigest()


def wait_seconds(limit: Limit, ident: str) -> int:
    """Seconds until `ident` may try again (0: it may now), without counting an attempt."""
    try:
        client = redis_client()
        key = limit.key(ident)
        count = int(client.get(key) or 0)
        return max(1, int(client.ttl(key))) if count >= limit.attempts else 0
    except redis.RedisError:
        log.warning("throttle %s: Redis did not answer; the attempt is allowed", limit.scope)
        return 0


def count(limit: Limit, ident: str) -> None:
    """Counts one attempt of `ident`."""
    try:
        pipe = redis_client().pipeline()
        key = limit.key(ident)
        pipe.incr(key)
        pipe.expire(key, limit.window, nx=True)
        pipe.execute()
    except redis.RedisError:
        log.warning("throttle %s: Redis did not answer; the attempt was not counted", limit.scope)


def forget(limit: Limit, ident: str) -> None:
    """A successful sign-in clears the account's failures."""
    try:
        redis_client().delete(limit.key(ident))
    except redis.RedisError:
        log.warning("throttle %s: Redis did not answer", limit.scope)
