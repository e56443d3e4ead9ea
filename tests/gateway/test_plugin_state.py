"""The plugin's Lua scripts against a plain Redis (REDIS_URL), its bounded caches, its settlement
spool and watch: no proxy."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.plugin import contract
from gateway.plugin.spool import Spool
from gateway.plugin.state import MISSING, DocumentCache

NOW = dt.datetime(2027, 3, 31, 23, 30, tzinfo=dt.UTC)


@pytest.fixture
def r() -> Any:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"), decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


def portal(period: str = "monthly", soft: float | None = None, scopes: tuple[str, ...] = ("key", "org")) -> dict:
    label = contract.period_start(period, NOW)
    return {"reservation": uuid.uuid4().hex, "key_id": 1, "key_hash": "h", "org": 9, "team": 3, "project": 4,
            "owner": "dev", "route": "chat", "group": "acme/chat", "started": 0.0,
            "scopes": [[s, 1 if s == "key" else 9, label, soft, period] for s in scopes]}


def settle(r: Any, p: dict, cost_nano: int, now: dt.datetime = NOW) -> Any:
    from gateway.plugin.callbacks import settle_args

    keys, args = settle_args(p, cost_nano, 10, 5, {"request_id": p["reservation"]}, now)
    return r.eval(contract.SETTLE, len(keys), *keys, *args)


def reserve(r: Any, p: dict, maximum: int, estimate: int = 1000) -> Any:
    keys = [*contract.rate_keys(1, 0), contract.estimate_key("acme/chat")]
    for scope, ident, label, _soft, _period in p["scopes"]:
        keys += contract.budget_keys(scope, ident, label)
    return r.eval(contract.RESERVE, len(keys), *keys, int(NOW.timestamp() * 1000), p["reservation"], estimate, 0,
                  -1, 0, 900_000, -1, -1, len(p["scopes"]), *[maximum] * len(p["scopes"]))


def spent(r: Any, scope: str, ident: int, period: str, now: dt.datetime = NOW) -> int:
    return int(r.get(contract.spend_key(scope, ident, contract.period_start(period, now))) or 0)


def test_settle_counts_the_cost_in_every_period_whatever_the_budget_period(r: Any) -> None:
    settle(r, portal("none"), 700)
    settle(r, portal("daily"), 300)
    for scope, ident in (("key", 1), ("org", 9)):
        assert [spent(r, scope, ident, p) for p in contract.PERIODS] == [1000, 1000, 1000, 1000]
    # a monthly budget added now sees the month's spend so far at once
    assert reserve(r, portal("monthly"), maximum=1000)[0] == "budget"
    assert reserve(r, portal("monthly"), maximum=1001)[0] == "ok"
    assert r.ttl(contract.spend_key("key", 1, "2027-03-31")) > 0 and r.ttl(contract.spend_key("key", 1, "all")) == -1
    assert r.xlen(contract.USAGE_STREAM) == 2


def test_settle_runs_once_per_request_and_releases_the_hold(r: Any) -> None:
    p = portal("monthly")
    assert reserve(r, p, maximum=10_000)[0] == "ok"
    held = contract.budget_keys("key", 1, "2027-03")[1]
    assert int(r.get(held)) == 1000
    assert settle(r, p, 500) != 0
    assert settle(r, p, 500) == 0  # replayed: nothing changes
    assert int(r.get(held)) == 0 and spent(r, "key", 1, "monthly") == 500 and r.xlen(contract.USAGE_STREAM) == 1


def test_a_period_rolling_over_between_reserve_and_settle_still_releases(r: Any) -> None:
    p = portal("daily")
    reserve(r, p, maximum=10_000)
    settle(r, p, 200, now=NOW + dt.timedelta(hours=1))  # the next day, and the next month
    assert int(r.get(contract.budget_keys("key", 1, "2027-03-31")[1])) == 0
    assert spent(r, "key", 1, "daily", NOW + dt.timedelta(hours=1)) == 200 and spent(r, "key", 1, "daily") == 0


def test_the_soft_budget_alert_fires_once_in_the_budget_period(r: Any) -> None:
    for _ in range(3):
        settle(r, portal("monthly", soft=0.000001, scopes=("key",)), 600)
    alerts = r.xrange(contract.ALERTS_STREAM)
    assert len(alerts) == 1 and alerts[0][1]["period"] == "2027-03" and alerts[0][1]["scope"] == "key"


def test_release_gives_back_only_the_hold(r: Any) -> None:
    from gateway.plugin.callbacks import release_keys

    p = portal("monthly")
    reserve(r, p, maximum=10_000)
    r.eval(contract.RELEASE, len(release_keys(p)), *release_keys(p), p["reservation"])
    assert int(r.get(contract.budget_keys("key", 1, "2027-03")[1])) == 0 and spent(r, "key", 1, "monthly") == 0
    assert r.xlen(contract.USAGE_STREAM) == 0


# Bounded caches -------------------------------------------------------------------------------

def test_unknown_keys_cannot_grow_the_cache_nor_evict_real_ones() -> None:
    cache = DocumentCache(max_docs=100, max_missing=50)
    cache.put("real", {"v": 1}, cache.generation)
    for _ in range(100_000):
        cache.put(f"hash:{uuid.uuid4().hex}", None, cache.generation)
    assert len(cache) == 51 and cache.get("real") == {"v": 1}
    for i in range(200):
        cache.put(f"doc:{i}", {"i": i}, cache.generation)
    assert len(cache._docs) == 100 and cache.get("doc:199") == {"i": 199} and cache.get("real") is MISSING
    cache.put("gone", None, cache.generation)
    assert cache.get("gone") is None and cache.get("never") is MISSING


def test_a_read_that_raced_an_invalidation_is_not_cached() -> None:
    cache = DocumentCache()
    generation = cache.generation
    cache.drop("doc")
    cache.put("doc", {"v": 1}, generation)
    assert cache.get("doc") is MISSING


# The spool and the watch ----------------------------------------------------------------------

def test_the_spool_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    spool.put(["k1"], ["a", 1])
    spool.put(["k2"], ["b", 2])
    again = Spool(tmp_path / "s.sqlite3")
    assert again.pending() == 2
    rows = again.oldest(10)
    assert [(k, a) for _, k, a in rows] == [(["k1"], ["a", 1]), (["k2"], ["b", 2])]
    again.done(rows[0][0])
    assert Spool(tmp_path / "s.sqlite3").pending() == 1


def test_an_unwritable_spool_keeps_settlements_in_memory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    spool = Spool(tmp_path / "file" / "s.sqlite3")
    spool.put(["k"], ["a"])
    assert spool.pending() == 1 and spool.oldest(5)[0][1] == ["k"]
    spool.done(spool.oldest(5)[0][0])
    assert spool.pending() == 0


class FlakyState:
    """The plugin's state whose Redis answers OOM until it is told otherwise."""

    def __init__(self, real: Any) -> None:
        self.real, self.failing, self.calls = real, True, 0

    async def run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        self.calls += 1
        if self.failing:
            raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        return self.real.eval(source, len(keys), *keys, *args)


def test_settlements_redis_refuses_are_spooled_and_replayed(r: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.plugin import callbacks

    state = FlakyState(r)
    monkeypatch.setattr(callbacks, "get_state", lambda: state)
    logger = callbacks.PortalCallbacks()
    logger.spool = Spool(tmp_path / "s.sqlite3")

    async def scenario() -> None:
        for _ in range(3):
            p = portal("monthly")
            await logger.settle(p, 0.000001, 10, 5, logger.event(p, p["reservation"], "success", 200, "", 5, 5,
                                                                   0.000001, 1.0, deployment="", provider_model=""))
        assert logger.spool.pending() == 3 and r.xlen(contract.USAGE_STREAM) == 0
        state.failing = False
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not logger.spool.pending():
                break

    asyncio.run(scenario())
    assert r.xlen(contract.USAGE_STREAM) == 3 and spent(r, "key", 1, "all", dt.datetime.now(dt.UTC)) == 3000
    assert Spool(tmp_path / "s.sqlite3").pending() == 0


def test_a_request_that_ends_without_a_callback_is_settled_by_the_watch(r: Any, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.plugin import callbacks

    state = FlakyState(r)
    state.failing = False
    monkeypatch.setattr(callbacks, "get_state", lambda: state)
    monkeypatch.setattr(callbacks, "SETTLE_GRACE", 0.2)
    logger = callbacks.PortalCallbacks()
    logger.spool = Spool(tmp_path / "s.sqlite3")
    served, abandoned = portal("monthly"), portal("monthly")
    for p in (served, abandoned):
        reserve(r, p, maximum=10_000)

    async def scenario() -> None:
        await logger.settle(served, 0.000001, 1, 1, logger.event(served, served["reservation"], "success", 200, "",
                                                                 1, 1, 0.000001, 1.0, deployment="",
                                                                 provider_model=""))
        logger.request_ended(served)  # settled already: not watched
        logger.request_ended(abandoned)
        await asyncio.sleep(1.5)

    asyncio.run(scenario())
    events = [json.loads(e["event"]) for _, e in r.xrange(contract.USAGE_STREAM)]
    assert [e["status"] for e in events] == ["success", "error"]
    assert events[1]["error_class"] == "NotSettled" and events[1]["request_id"] == abandoned["reservation"]
    assert int(r.get(contract.budget_keys("key", 1, "2027-03")[1])) == 0


# Red team: served without spend; estimates that ignore n, best_of and max_output_tokens ---------------

class PricedState(FlakyState):
    """The plugin's state with the portal's prices for the model group (USD per token)."""

    def __init__(self, real: Any, docs: dict[str, Any] | None = None) -> None:
        super().__init__(real)
        self.failing = False
        self.prices = {"acme/chat": (0.000001, 0.000002)}
        self.docs = docs or {}

    async def doc(self, name: str) -> Any:
        return self.docs.get(name)


def test_a_success_litellm_priced_at_zero_is_charged_at_the_portals_prices(r: Any, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.plugin import callbacks

    monkeypatch.setattr(callbacks, "get_state", lambda: PricedState(r))
    logger = callbacks.PortalCallbacks()
    logger.spool = Spool(tmp_path / "s.sqlite3")
    p = portal("monthly")
    for cost in (0.0, None):
        p = portal("monthly")
        kwargs = {"litellm_params": {"metadata": {"user_api_key_metadata": {"portal": p}}}, "response_cost": cost,
                  "standard_logging_object": {"prompt_tokens": 100, "completion_tokens": 50, "response_cost": cost}}
        asyncio.run(logger.async_log_success_event(kwargs, None, None, None))
    now = dt.datetime.now(dt.UTC)
    assert spent(r, "key", 1, "all", now) == 2 * (100 * 1000 + 50 * 2000)  # nano-USD
    events = [json.loads(e["event"]) for _, e in r.xrange(contract.USAGE_STREAM)]
    assert [e["cost_nano"] for e in events] == [200_000, 200_000]


def test_an_answered_request_the_watch_settles_is_charged_its_estimate(r: Any, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.plugin import callbacks

    state = PricedState(r)
    monkeypatch.setattr(callbacks, "get_state", lambda: state)
    monkeypatch.setattr(callbacks, "SETTLE_GRACE", 0.2)
    logger = callbacks.PortalCallbacks()
    logger.spool = Spool(tmp_path / "s.sqlite3")
    answered, refused = portal("monthly"), portal("monthly")
    answered["answered"] = True
    for p in (answered, refused):
        reserve(r, p, maximum=10_000_000, estimate=1000)

    async def scenario() -> None:
        logger.request_ended(answered)
        logger.request_ended(refused)
        await asyncio.sleep(1.5)

    asyncio.run(scenario())
    events = {json.loads(e["event"])["request_id"]: json.loads(e["event"]) for _, e in r.xrange(contract.USAGE_STREAM)}
    assert events[answered["reservation"]]["status"] == "success"
    assert events[answered["reservation"]]["cost_nano"] == 1000
    assert events[refused["reservation"]]["status"] == "error" and events[refused["reservation"]]["cost_nano"] == 0
    assert spent(r, "key", 1, "all", dt.datetime.now(dt.UTC)) == 1000
    assert int(r.get(contract.budget_keys("key", 1, "2027-03")[1])) == 0


@pytest.mark.parametrize(("fields", "completion_tokens"), [
    ({}, 256), ({"max_tokens": 100}, 100), ({"max_completion_tokens": 100}, 100),
    ({"max_output_tokens": 50}, 50), ({"max_tokens": 100, "n": 3}, 300), ({"best_of": 4, "n": 2}, 4 * 256),
    ({"n": 5, "max_output_tokens": 10}, 50),
])
def test_the_reservation_holds_every_answer_a_request_asks_for(r: Any, fields: dict[str, Any],
                                                              completion_tokens: int) -> None:
    from gateway.plugin import auth

    key = {"id": 1, "team": 3, "project": 4, "org": 9, "rpm": None, "tpm": None,
           "budget": {"max": 10.0, "soft": None, "period": "none"}}
    state = PricedState(r)
    scopes = asyncio.run(auth.reserve(state, {"model": "chat", **fields}, 4000, key, {"id": 9}, "acme/chat",  # type: ignore[arg-type]
                                      "req-1"))
    held = int(r.get(contract.budget_keys("key", 1, scopes[0]["period_label"])[1]))
    assert held == 1000 * 1000 + completion_tokens * 2000  # 1,000 prompt tokens (4 bytes each) + the answers
