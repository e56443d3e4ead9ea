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
  {p}:v1:epoch              -> set by the portal's full push (absent: the state is not loaded)
  {p}:v1:events             -> pub/sub channel: {"type": "key"|"org"|"team"|"project"|"models", "id": int}
  {p}:v1:spend:{scope}:{id}:{period}   -> nano-USD spent, scope in key|project|team|org; every request
                                          adds to the counters of all four periods (day, week, month, all)
  {p}:v1:settled:{reservation}         -> marks a settled request (SETTLE runs once per request)
  {p}:v1:held:{scope}:{id}:{period}    -> nano-USD reserved by requests in flight
  {p}:v1:holds|holdexp:{scope}:{id}:{period} -> each reservation and when it lapses
  {p}:v1:rl:req|tok:{key id}:{minute}  -> requests and tokens of a key in a minute
  {p}:v1:usage              -> stream of usage events (consumer group "portal")

Every document is JSON with a "v" field; a write only replaces a document
with a lower "v" (see SET_IF_NEWER), so pushes that race never go back in time.

Outside the versioned prefix, so that a plugin of any release finds it:

  {p}:contract              -> {"version": CONTRACT_VERSION, "written_at": epoch}, written by the
                               portal's full push; the plugin serves only a contract version in
                               [CONTRACT_OLDEST, CONTRACT_VERSION] (`gateway.plugin.version`)
"""

from __future__ import annotations

import datetime as dt
import json
import os

SCHEMA_VERSION = 1
PREFIX = os.environ.get("GATEWAY_REDIS_PREFIX", "llmp")
BASE = f"{PREFIX}:v{SCHEMA_VERSION}"

# The contract: this layout and the documents' meaning. Raise CONTRACT_VERSION with any change an
# older plugin would misread (a new restriction in a document, a moved key); CONTRACT_OLDEST is the
# oldest portal contract this plugin still serves correctly.
CONTRACT_VERSION = 1
CONTRACT_OLDEST = 1
CONTRACT = f"{PREFIX}:contract"

EVENTS = f"{BASE}:events"
EPOCH = f"{BASE}:epoch"  # set by a full push; missing after a Redis restart without persistence
VERSION = f"{BASE}:version"
MODELS = f"{BASE}:models"
USAGE_STREAM = f"{BASE}:usage"
USAGE_GROUP = "portal"
ALERTS_STREAM = f"{BASE}:alerts"


def contract_document(now: float) -> str:
    """What the portal's full push writes under CONTRACT."""
    return json.dumps({"version": CONTRACT_VERSION, "written_at": round(now, 3)}, separators=(",", ":"))


def contract_version(raw: str | bytes | None) -> int | None:
    """The version in a contract record (None: no record, or not one)."""
    if raw is None:
        return None
    try:
        version = json.loads(raw)["version"]
    except (ValueError, TypeError, KeyError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def contract_problem(raw: str | bytes | None) -> str | None:
    """Why a plugin speaking this contract must not serve the state the portal wrote (None: it may).
    No record yet (the portal has not pushed) is not a problem: there is nothing to misread."""
    if raw is None:
        return None
    version = contract_version(raw)
    if version is None:
        return f"the contract record in Redis ({CONTRACT}) cannot be read: run `manage.py gateway_sync` on the portal"
    if version > CONTRACT_VERSION:
        return (f"the portal speaks contract version {version}, this gateway's plugin only {CONTRACT_OLDEST} to "
                f"{CONTRACT_VERSION}: upgrade the gateway (the plugin mounted from gateway/plugin) to the portal's "
                "release and restart it")
    if version < CONTRACT_OLDEST:
        return (f"the portal speaks contract version {version}, this gateway's plugin needs {CONTRACT_OLDEST} to "
                f"{CONTRACT_VERSION}: upgrade the portal, then run `manage.py gateway_sync`")
    return None


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


NANO = 1_000_000_000  # money in Redis is integer nano-USD, so concurrent additions are exact


def spend_key(scope: str, ident: int, period_label: str) -> str:
    return f"{BASE}:spend:{scope}:{ident}:{period_label}"


def budget_keys(scope: str, ident: int, period_label: str) -> list[str]:
    """spend, held (running sum of reservations), holds (hash), hold expiries (zset)."""
    base = f"{BASE}:%s:{scope}:{ident}:{period_label}"
    return [base % "spend", base % "held", base % "holds", base % "holdexp"]


def rate_keys(key_id: int, minute: int) -> list[str]:
    return [f"{BASE}:rl:req:{key_id}:{minute}", f"{BASE}:rl:tok:{key_id}:{minute}"]


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


def estimate_key(group: str) -> str:
    """How many completion tokens the model group's answers have had (moving average)."""
    return f"{BASE}:est:{group}"


# Reserve before a request. KEYS: rl_req, rl_tok, estimate, then 4 per scope (see budget_keys).
# ARGV: now_ms, request id, prompt cost (nano), output price (nano per token), max_tokens (-1 none),
# default completion tokens, hold ttl ms, rpm (-1 none), tpm (-1 none), n scopes, then n max budgets
# (nano, -1 none).
# The estimate is the prompt's cost plus the usual answer length of the model
# group (or max_tokens, if smaller). A request is admitted while
# spend + held < max for every scope, so once a budget is reached only the
# requests already in flight can still add to it.
RESERVE = """
local now, req = tonumber(ARGV[1]), ARGV[2]
local prompt_cost, out_price, max_tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tokens = tonumber(redis.call('HGET', KEYS[3], 'completion') or ARGV[6])
if max_tokens >= 0 and max_tokens < tokens then tokens = max_tokens end
local est = math.ceil(prompt_cost + tokens * out_price)
local ttl, rpm, tpm, n = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
for i = 0, n - 1 do
  local spend_k, held_k, holds_k, exp_k = KEYS[4 + i * 4], KEYS[5 + i * 4], KEYS[6 + i * 4], KEYS[7 + i * 4]
  local max = tonumber(ARGV[11 + i])
  if max >= 0 then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', exp_k, '-inf', now)) do
      local e = redis.call('HGET', holds_k, m)
      if e then redis.call('DECRBY', held_k, e); redis.call('HDEL', holds_k, m) end
      redis.call('ZREM', exp_k, m)
    end
    local spent = tonumber(redis.call('GET', spend_k) or '0')
    local held = tonumber(redis.call('GET', held_k) or '0')
    if spent + held >= max then return {'budget', i, tostring(spent), tostring(held)} end
  end
end
if rpm >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then return {'rpm'} end
if tpm >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then return {'tpm'} end
if rpm >= 0 then redis.call('INCR', KEYS[1]); redis.call('PEXPIRE', KEYS[1], 61000) end
for i = 0, n - 1 do
  if tonumber(ARGV[11 + i]) >= 0 then
    local held_k, holds_k, exp_k = KEYS[5 + i * 4], KEYS[6 + i * 4], KEYS[7 + i * 4]
    redis.call('INCRBY', held_k, est)
    redis.call('HSET', holds_k, req, est)
    redis.call('ZADD', exp_k, now + ttl, req)
    redis.call('PEXPIRE', held_k, ttl * 2); redis.call('PEXPIRE', holds_k, ttl * 2); redis.call('PEXPIRE', exp_k, ttl * 2)
  end
end
return {'ok', tostring(est)}
"""

PERIODS = ("daily", "weekly", "monthly", "none")  # spend is counted in all of them, whatever a budget's period


def settled_key(reservation: str) -> str:
    """Set by the first settlement of a request, so that a second one (a retry whose answer was lost,
    a replay from the spool, the watch of unsettled requests) changes nothing."""
    return f"{BASE}:settled:{reservation}"


# Settle after a request. KEYS: rl_tok, usage stream, alerts stream, estimate, settled marker, then 7 per
# scope: held, holds, holdexp (of the reservation's budget period), spend daily, weekly, monthly, all.
# ARGV: request id, cost (nano), tokens, completion tokens (-1: unknown), n, usage event JSON, marker ttl
# (ms), expire-at epoch of the daily, weekly and monthly counters, then per scope: soft budget (nano, -1
# none), scope name, scope id, budget period label, index (1-4) of the budget's period among the spend keys.
# Once per request id: releases the reservation, adds the real cost to the counters of every period
# (so that a budget added or changed mid-period sees the period's spend so far), appends the usage
# event, keeps the group's answer length up to date, and raises one soft-budget alert per scope and
# period, when spend crosses it. The marker is the first write, so that a Redis refusing writes
# (OOM, READONLY) leaves nothing half done.
SETTLE = """
if not redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[7]) then return 0 end
local req, cost, tokens, completion, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
for i = 0, n - 1 do
  local k = 6 + i * 7
  local e = redis.call('HGET', KEYS[k + 1], req)
  if e then redis.call('DECRBY', KEYS[k], e); redis.call('HDEL', KEYS[k + 1], req); redis.call('ZREM', KEYS[k + 2], req) end
  if cost > 0 then
    local a = 11 + i * 5
    local soft, which = tonumber(ARGV[a]), tonumber(ARGV[a + 4])
    for p = 1, 4 do
      local spend_k = KEYS[k + 2 + p]
      local after = redis.call('INCRBY', spend_k, cost)
      if p < 4 and after == cost then redis.call('EXPIREAT', spend_k, ARGV[7 + p]) end
      if p == which and soft >= 0 and after - cost < soft and after >= soft then
        redis.call('XADD', KEYS[3], '*', 'scope', ARGV[a + 1], 'id', ARGV[a + 2], 'period', ARGV[a + 3],
                   'spend', tostring(after), 'soft', tostring(soft))
      end
    end
  end
end
if tokens > 0 then redis.call('INCRBY', KEYS[1], tokens); redis.call('PEXPIRE', KEYS[1], 61000) end
if completion >= 0 then
  local avg = tonumber(redis.call('HGET', KEYS[4], 'completion') or tostring(completion))
  redis.call('HSET', KEYS[4], 'completion', tostring(avg + 0.2 * (completion - avg)))
end
return redis.call('XADD', KEYS[2], '*', 'event', ARGV[6])
"""

# What a request that was answered but never reported its usage is charged (the settlement watch):
# the estimate its reservation holds, the same in every scope with a budget; when no scope holds one
# (no budget anywhere), the group's usual answer length at the output price. KEYS: estimate, then the
# holds hash of each scope; ARGV: request id, output price (nano per token), default completion tokens.
HELD_ESTIMATE = """
local held = -1
for i = 2, #KEYS do
  local e = tonumber(redis.call('HGET', KEYS[i], ARGV[1]) or '-1')
  if e > held then held = e end
end
if held >= 0 then return tostring(held) end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'completion') or ARGV[3])
return tostring(math.ceil(tokens * tonumber(ARGV[2])))
"""

# Release a reservation without settling it (the request failed before it was served): KEYS: 3 per
# scope (held, holds, holdexp); ARGV: request id.
RELEASE = """
for i = 1, #KEYS, 3 do
  local e = redis.call('HGET', KEYS[i + 1], ARGV[1])
  if e then redis.call('DECRBY', KEYS[i], e); redis.call('HDEL', KEYS[i + 1], ARGV[1]); redis.call('ZREM', KEYS[i + 2], ARGV[1]) end
end
return 1
"""
