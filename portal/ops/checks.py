"""The checks of `manage.py doctor`: each returns one or more `Check`s (a name, pass or fail, what was
seen, and on failure what to do). Every check that crosses the network is bounded by `timeout`; none
raises. Where the gateways are: settings.GATEWAY_URLS (default: GATEWAY_INTERNAL_URL)."""

from __future__ import annotations

import email.utils
import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from gateway.plugin import redisconn
from portal.logs import request_id_headers

QUEUES = ("sync", "usage", "evals")
MAX_SKEW_SECONDS = 2.0
ENV_HINT = "(.env, PORTAL_ENV_FILE or var/demo.env)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name:<24} {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n      -> {self.fix}"

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "data" or v}


def failure(exc: BaseException) -> str:
    """An exception's class and first line, without anything it may carry beyond that."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def redis_where() -> str:
    return redisconn.describe(settings.REDIS_URL)


# Database, Redis ---------------------------------------------------------------------------------------


def check_database() -> list[Check]:
    try:
        connection.ensure_connection()
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        return [Check("database", False, f"{connection.vendor} {connection.settings_dict.get('NAME')}: "
                      f"{failure(exc)}", f"start the database or fix DATABASE_URL {ENV_HINT}")]
    name = f"{connection.vendor} {connection.settings_dict.get('NAME')}"
    if pending:
        return [Check("database", False, f"{name}: {len(pending)} migration(s) not applied",
                      "run `python manage.py migrate` (then `python manage.py seed_beat`)")]
    return [Check("database", True, f"{name}: connected, migrations applied")]


def check_redis(clock: dict[str, float]) -> list[Check]:
    from gateway.redis_connection import redis_client

    where = redis_where()
    try:
        r = redis_client()
        before = time.time()
        seconds, micros = r.time()
        clock["redis"] = seconds + micros / 1e6 - (before + time.time()) / 2
        info = r.info("server")
        persistence = r.info("persistence")
    except Exception as exc:  # noqa: BLE001
        return [Check("redis", False, f"{where}: {failure(exc)}",
                      f"start Redis, or fix REDIS_URL {ENV_HINT}; the gateway, the Celery broker and the usage "
                      "stream all need it")]
    aof = "on" if persistence.get("aof_enabled") else "off"
    return [Check("redis", True, f"{where}: Redis {info.get('redis_version')}, append-only file {aof}")]


# Celery ------------------------------------------------------------------------------------------------


def check_workers(timeout: float) -> list[Check]:
    from portal.celery import app

    conn = app.connection_for_read()
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        answers = app.control.inspect(timeout=timeout, connection=conn).active_queues() or {}
    except Exception as exc:  # noqa: BLE001
        return [Check(f"workers:{q}", False, f"the broker cannot be reached ({failure(exc)})",
                      f"start Redis, or fix CELERY_BROKER_URL / REDIS_URL {ENV_HINT}") for q in QUEUES]
    finally:
        conn.release()
    serving: dict[str, list[str]] = {q: [] for q in QUEUES}
    for worker, queues in answers.items():
        for queue in queues or []:
            if queue.get("name") in serving:
                serving[queue["name"]].append(worker)
    out = []
    for queue, workers in serving.items():
        if workers:
            out.append(Check(f"workers:{queue}", True, f"{len(workers)} worker(s) answer: {', '.join(sorted(workers))}"))
        else:
            out.append(Check(f"workers:{queue}", False, f"no worker consumes the '{queue}' queue "
                             f"(answered within {timeout:g} s: {len(answers)} worker(s))",
                             f"start one: `celery -A portal worker -Q {queue}` (compose: the worker-{queue} service)"))
    return out


def check_beat() -> list[Check]:
    from portal.ops import beat

    try:
        record = beat.read_heartbeat()
    except Exception as exc:  # noqa: BLE001
        return [Check("beat", False, f"its heartbeat cannot be read ({failure(exc)})", "start Redis first")]
    fix = ("start exactly one beat: `celery -A portal beat` (its scheduler must be "
           "portal.ops.beat:HeartbeatScheduler, settings' CELERY_BEAT_SCHEDULER)")
    if record is None:
        return [Check("beat", False, "no heartbeat in Redis", fix)]
    age = time.time() - float(record["at"])
    where = f"pid {record.get('pid')} on {record.get('host')}"
    if age > beat.MAX_AGE:
        return [Check("beat", False, f"last heartbeat {age:.0f} s ago ({where})", fix)]
    return [Check("beat", True, f"heartbeat {max(age, 0):.0f} s ago ({where})")]


# Gateways ----------------------------------------------------------------------------------------------


def gateway_urls() -> list[str]:
    """Every proxy: settings.GATEWAY_URLS (comma-separated in the environment), else GATEWAY_INTERNAL_URL."""
    return list(settings.GATEWAY_URLS)


def check_gateway(url: str, timeout: float, clock: dict[str, float]) -> Check:
    from gateway.plugin import contract

    name = f"gateway:{httpx.URL(url).host}:{httpx.URL(url).port or 80}"
    try:
        before = time.time()
        response = httpx.get(f"{url}/portal/health", timeout=timeout, headers=request_id_headers())
        after = time.time()
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    except (httpx.HTTPError, ValueError) as exc:
        return Check(name, False, f"{url}: {failure(exc)}", "start the gateway (`python manage.py gateway`), or list "
                     f"the proxies in GATEWAY_URLS {ENV_HINT}")
    if not isinstance(body, dict) or "plugin_version" not in body:
        return Check(name, False, f"{url}/portal/health answered {response.status_code} without the plugin's health",
                     "the proxy runs without the portal's plugin, or an old one: start it with "
                     "LITELLM_WORKER_STARTUP_HOOKS=gateway.plugin:install (`manage.py gateway` sets it)")
    if isinstance(body.get("time"), int | float):
        clock[name] = float(body["time"]) - (before + after) / 2
    versions = (f"plugin {body.get('plugin_version')}, contract {body.get('contract_oldest')}-"
                f"{body.get('contract_version')}, Redis has {body.get('portal_contract_version')}")
    data = {k: body.get(k) for k in ("plugin_version", "contract_version", "portal_contract_version", "status")}
    if body.get("status") != "ok":
        fix = ("upgrade the side the message names" if body.get("status") == "contract_mismatch"
               else "check the gateway's PORTAL_GATEWAY_REDIS_URL and that Redis runs")
        return Check(name, False, f"{body.get('status')}: {body.get('message', '')} ({versions})", fix, data)
    if body.get("contract_version") != contract.CONTRACT_VERSION:
        return Check(name, False, f"the plugin speaks contract {body.get('contract_version')}, this portal "
                     f"{contract.CONTRACT_VERSION} ({versions})", "run the same release on the gateway and the portal",
                     data)
    if not body.get("state_loaded"):
        return Check(name, False, f"up, but the portal's state is not in Redis ({versions})",
                     "run `python manage.py gateway_sync`", data)
    return Check(name, True, f"{url}: {versions}, LiteLLM {body.get('litellm_version')}", data=data)


def check_drift() -> list[Check]:
    from gateway import sync

    try:
        problems = sync.backend().drift()
    except Exception as exc:  # noqa: BLE001
        return [Check("drift", False, f"not compared ({failure(exc)})", "start Redis (and the database) first")]
    if problems:
        shown = "; ".join(p.strip() for p in problems[:3]) + (" ..." if len(problems) > 3 else "")
        return [Check("drift", False, f"{len(problems)} difference(s) between the portal and the gateway: {shown}",
                      "run `python manage.py gateway_sync` (pushes everything again); "
                      "`gateway_sync --check` lists them all")]
    return [Check("drift", True, "the gateway's state matches the database")]


# Langfuse ----------------------------------------------------------------------------------------------


def _langfuse_one(conn: Any, timeout: float) -> tuple[dict[str, Any], float | None]:
    from evals.langfuse_client import LangfuseClient

    dates: list[tuple[float, str]] = []

    def record(response: httpx.Response) -> None:
        if response.headers.get("date"):
            dates.append((time.time(), response.headers["date"]))

    with LangfuseClient(conn.host, conn.public_key, conn.secret_key(), timeout=timeout, max_retries=0) as client:
        client.http.event_hooks["response"].append(record)
        info = client.check()
    skew = None
    if dates:
        at, value = dates[-1]
        parsed = email.utils.parsedate_to_datetime(value)
        skew = parsed.timestamp() - at + 0.5  # a Date header has whole seconds
    return info, skew


def bounded(calls: list[Callable[[], Any]], deadline: float, at_once: int = 16) -> list[tuple[str, Any]]:
    """Run the calls on daemon threads, at most `at_once` at a time, all of them within `deadline` seconds:
    ("ok", value), ("error", exception), ("timeout", None) for a call still running at the deadline, or
    ("skipped", None) for one never started by then. One deadline for the whole, however many calls: a
    tenant's projects are as many as it likes, and its hosts may answer a byte a second (no read timeout
    trips), so a deadline per batch would let it stretch doctor at will. A daemon thread left on such a
    host holds neither the command nor the interpreter's exit (a ThreadPoolExecutor's would). Not more
    threads: making a client costs CPU (~50 ms here), and 64 at once took longer than the deadline."""
    out: list[tuple[str, Any]] = [("skipped", None)] * len(calls)
    until = time.monotonic() + deadline
    changed = threading.Condition()
    running = 0

    def runner(i: int, call: Callable[[], Any]) -> None:
        nonlocal running
        try:
            result: tuple[str, Any] = ("ok", call())
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            result = ("error", exc)
        with changed:
            out[i] = result
            running -= 1
            changed.notify()

    with changed:
        for i, call in enumerate(calls):
            while running >= at_once and time.monotonic() < until:
                changed.wait(until - time.monotonic())
            if time.monotonic() >= until:
                break
            out[i] = ("timeout", None)
            running += 1
            threading.Thread(target=runner, args=(i, call), daemon=True, name=f"doctor-{i}").start()
        while running and time.monotonic() < until:
            changed.wait(until - time.monotonic())
        return list(out)


def interleaved(conns: list[Any]) -> list[Any]:
    """The connections one organization at a time (its first project, the next one's first, ...): one
    organization's many slow hosts then cannot take every thread before the others get one."""
    by_org: dict[int, list[Any]] = {}
    for conn in conns:
        by_org.setdefault(conn.project.organization_id, []).append(conn)
    rounds = max(len(group) for group in by_org.values())
    return [group[i] for i in range(rounds) for group in by_org.values() if i < len(group)]


def check_langfuse(timeout: float, clock: dict[str, float]) -> list[Check]:
    from evals.langfuse_client import LangfuseError
    from evals.models import LangfuseConnection

    conns = list(LangfuseConnection.objects.filter(enabled=True).select_related("project__organization")
                 .order_by("project__organization__slug", "project_id"))
    if not conns:
        return [Check("langfuse", True, "no project is connected to Langfuse")]
    # Each project's check together, the whole of it bounded (a health call and an authenticated call).
    order = interleaved(conns)
    calls: list[Callable[[], Any]] = [functools.partial(_langfuse_one, c, timeout) for c in order]
    outcomes = dict(zip((c.pk for c in order), bounded(calls, timeout * 2 + 1), strict=True))
    out: list[Check] = []
    for conn in conns:  # shown in the order of organizations and projects
        state, value = outcomes[conn.pk]
        name = f"langfuse:{conn.project.organization.slug}/{conn.project_id}"
        fix = (f"check the project's Langfuse connection ({conn.host}): the host must answer and the keys be "
               f"the project's (web: the project's Langfuse settings; API: PUT .../projects/{conn.project_id}/langfuse/)")
        if state == "timeout":
            out.append(Check(name, False, f"{conn.host}: no full answer within {timeout * 2 + 1:g} s", fix))
        elif state == "skipped":
            out.append(Check(name, False, f"{conn.host}: not checked: the Langfuse check's {timeout * 2 + 1:g} s "
                             "ran out (other hosts answered too slowly)",
                             "look at the hosts that timed out above; `doctor --only langfuse --timeout N` waits longer"))
        elif state == "error":
            detail = str(value) if isinstance(value, LangfuseError) else failure(value)
            out.append(Check(name, False, f"{conn.host}: {detail}", fix))
        else:
            info, skew = value
            if skew is not None:
                clock[f"langfuse {conn.host}"] = skew
            project = (info.get("project") or {}).get("name", "?")
            out.append(Check(name, True, f"{conn.host}: Langfuse {info.get('version')}, project '{project}'"))
    return out


# Clock -------------------------------------------------------------------------------------------------


def check_clock(clock: dict[str, float]) -> list[Check]:
    if not clock:
        return [Check("clock", False, "nothing to compare with (Redis and the gateways did not answer)",
                      "fix the checks above first")]
    shown = ", ".join(f"{k} {v:+.3f} s" for k, v in clock.items())
    worst = max(clock.items(), key=lambda kv: abs(kv[1]))
    limit = MAX_SKEW_SECONDS
    if abs(worst[1]) > limit + (1.0 if worst[0].startswith("langfuse") else 0.0):
        return [Check("clock", False, f"{worst[0]} is {worst[1]:+.1f} s off this host ({shown})",
                      "synchronise the clocks (NTP: chrony or systemd-timesyncd): budget periods, key expiry, "
                      "the settlement watch and evaluation windows depend on them")]
    return [Check("clock", True, f"within {limit:g} s of this host: {shown}")]


# All ---------------------------------------------------------------------------------------------------

NAMES = ("database", "redis", "workers", "beat", "gateway", "drift", "langfuse", "clock")


def run(only: Iterable[str] = (), timeout: float = 3.0, on_check: Callable[[Check], None] | None = None
        ) -> list[Check]:
    """Every check (or those named in `only`: a name above, or a check's full name such as
    `workers:usage`), in order; `on_check` sees each as it is done."""
    wanted = {w.strip() for w in only if w.strip()}

    def want(group: str) -> bool:
        return not wanted or group in wanted or any(w.startswith(f"{group}:") for w in wanted)

    def keep(check: Check) -> bool:
        return not wanted or check.name in wanted or check.name.split(":")[0] in wanted

    clock: dict[str, float] = {}
    out: list[Check] = []

    def emit(checks: Iterable[Check]) -> None:
        for c in checks:
            if keep(c):
                out.append(c)
                if on_check:
                    on_check(c)

    if want("database"):
        emit(check_database())
    if want("redis") or want("clock"):
        redis_checks = check_redis(clock)
        emit(redis_checks if want("redis") else [])
    if want("workers"):
        emit(check_workers(timeout))
    if want("beat"):
        emit(check_beat())
    if want("gateway") or want("clock"):
        gateway_checks = [check_gateway(u, timeout, clock) for u in gateway_urls()]
        emit(gateway_checks if want("gateway") else [])
    if want("drift"):
        emit(check_drift())
    if want("langfuse"):
        emit(check_langfuse(timeout, clock))
    if want("clock"):
        emit(check_clock(clock))
    return out
