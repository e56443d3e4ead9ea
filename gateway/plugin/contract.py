"""The Redis layout shared by the portal (writer) and the gateway plugin
(reader). Standard library only: the plugin runs inside the stock LiteLLM
proxy, without Django.

Version 1, under a prefix (default `llmp`):

  {p}:v1:hash:{sha256}      -> {"key_id": int, "grace_until": epoch | null}
  {p}:v1:key:{id}           -> key document (status, routes, limits, budget, expiry)
  {p}:v1:org:{id}           -> {"slug", "budget", "routes": {name: {"group", "teams", "active"}}}
  {p}:v1:team:{id}          -> {"budget"}
  {p}:v1:project:{id}       -> {"budget", "langfuse": {host, public_key, secret_key} | null}
  {p}:v1:models             -> {"model_list": [...], "fallbacks": [...], "retries": {...}}
  {p}:v1:version            -> counter; every document carries the "v" it was written with
  {p}:v1:events             -> pub/sub channel: {"type": "key"|"org"|"team"|"project"|"models", "id": int}
  {p}:v1:spend:{scope}:{id}:{period}   -> USD spent (float), scope in key|project|team|org
  {p}:v1:held:{scope}:{id}:{period}    -> USD reserved by requests in flight
  {p}:v1:usage              -> stream of usage events (consumer group "portal")

Every document is JSON with a "v" field; a write only replaces a document
with a lower "v" (see SET_IF_NEWER), so pushes that race never go back in time.
"""

from __future__ import annotations

import datetime as dt
import os

SCHEMA_VERSION = 1
PREFIX = os.environ.get("GATEWAY_REDIS_PREFIX", "llmp")
BASE = f"{PREFIX}:v{SCHEMA_VERSION}"

EVENTS = f"{BASE}:events"
VERSION = f"{BASE}:version"
MODELS = f"{BASE}:models"
USAGE_STREAM = f"{BASE}:usage"
USAGE_GROUP = "portal"
ALERTS_STREAM = f"{BASE}:alerts"


def hash_doc(sha256_hex: str) -> str:
    return f"{BASE}:hash:{sha256_hex}"


def key_doc(key_id: int) -> str:
    return f"{BASE}:key:{key_id}"


def org_doc(org_id: int) -> str:
    return f"{BASE}:org:{org_id}"


def team_doc(team_id: int) -> str:
    return f"{BASE}:team:{team_id}"


def project_doc(project_id: int) -> str:
    return f"{BASE}:project:{project_id}"


def period_start(period: str, now: dt.datetime) -> str:
    """The label of the budget period containing `now` (UTC)."""
    now = now.astimezone(dt.UTC)
    if period == "daily":
        return now.strftime("%Y-%m-%d")
    if period == "weekly":
        monday = now.date() - dt.timedelta(days=now.weekday())
        return "w" + monday.isoformat()
    if period == "monthly":
        return now.strftime("%Y-%m")
    return "all"


def period_end(period: str, now: dt.datetime) -> dt.datetime | None:
    """When the budget period containing `now` ends (None: never)."""
    now = now.astimezone(dt.UTC)
    day = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
    if period == "daily":
        return day + dt.timedelta(days=1)
    if period == "weekly":
        return day + dt.timedelta(days=7 - now.weekday())
    if period == "monthly":
        return dt.datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=dt.UTC)
    return None


def spend_key(scope: str, ident: int, period_label: str) -> str:
    return f"{BASE}:spend:{scope}:{ident}:{period_label}"


def held_key(scope: str, ident: int, period_label: str) -> str:
    return f"{BASE}:held:{scope}:{ident}:{period_label}"


# KEYS[1] = document key, ARGV[1] = JSON with "v", ARGV[2] = v, ARGV[3] = expire-at epoch or "0"
SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' and doc['v'] and tonumber(doc['v']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS[1] = document key, ARGV[1] = v: delete unless a newer version was written.
DELETE_IF_NOT_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' and doc['v'] and tonumber(doc['v']) > tonumber(ARGV[1]) then
    return 0
  end
  redis.call('DEL', KEYS[1])
end
return 1
"""
