"""The web's Prometheus endpoint (`/metrics`) and what it shows.

Counted where it happens, in every process (prometheus_client):
- `portal_http_requests_total{view, method, status}` and
  `portal_http_request_seconds{view, method}`: each request of the web, by the
  URL pattern's name (`web:key-detail`, `api:key-list`; `unmatched` for a 404
  no pattern took), by `RequestMetricsMiddleware`;
- `portal_gateway_pushes_total{kind, result}`: each push of an outbox change to
  the gateway (`gateway.sync.process`: the web right after a commit, the `sync`
  queue for retries), result `ok` or `failed`;
- `portal_celery_tasks_total{task, state}`: each task a worker ran, by its name
  and final state (SUCCESS, FAILURE, RETRY...), from Celery's `task_postrun`.

Read when scraped (from PostgreSQL and Redis, in the web process that answers):
- `portal_outbox_pending`, `portal_outbox_failing` (pending, tried and failed
  at least once), `portal_outbox_oldest_pending_seconds`;
- `portal_usage_stream_pending` (delivered to a consumer, not yet written),
  `portal_usage_stream_lag` (not yet delivered), and
  `portal_usage_stream_oldest_seconds` (the age of the oldest entry not yet
  written: the consumer deletes what it wrote);
- `portal_eval_runs{status}`, `portal_benchmark_runs{status}`;
- `portal_metrics_source_up{source}`: 0 when the database or Redis could not
  be read for this scrape (their lines are then missing, not zero).

Labels name views, kinds, tasks and states, never a tenant: their values are
a fixed, small set.

Several processes: gunicorn's workers and the Celery workers write their
counters to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode)
and this endpoint sums the directory, so one scrape of any web worker shows
them all. Give the web and the workers the same directory (one host, or a
shared volume in compose); files are named by host and pid, so containers
sharing the volume never write the same file. Empty it when the web starts
(the counters start again at zero, which Prometheus's rate() expects).

Not public: `Authorization: Bearer <METRICS_TOKEN>`, or a client address in
METRICS_ALLOWED_NETWORKS; anyone else gets the site's 404."""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client as prom
from celery.signals import task_postrun
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    _HOST = socket.gethostname().replace("_", "-")
    # The files' names tell processes apart: pids alone repeat across containers sharing the directory.
    values.ValueClass = values.MultiProcessValue(lambda: f"{_HOST}-{os.getpid()}")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = prom.Counter("portal_http_requests", "Requests the web answered.", ["view", "method", "status"])
HTTP_SECONDS = prom.Histogram("portal_http_request_seconds", "Time the web took to answer a request.",
                              ["view", "method"], buckets=LATENCY_BUCKETS)
GATEWAY_PUSHES = prom.Counter("portal_gateway_pushes", "Changes pushed to the gateway (the outbox).",
                              ["kind", "result"])
CELERY_TASKS = prom.Counter("portal_celery_tasks", "Celery tasks run, by final state.", ["task", "state"])


class RequestMetricsMiddleware:
    """Counts and times every request (`portal_http_requests_total`, `portal_http_request_seconds`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or "unnamed") if match is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        HTTP_SECONDS.labels(view, method).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(view, method, str(response.status_code)).inc()
        return response


def gateway_push(kind: str, ok: bool) -> None:
    GATEWAY_PUSHES.labels(kind, "ok" if ok else "failed").inc()


@task_postrun.connect
def _task_ran(sender: Any = None, state: str | None = None, **kwargs: Any) -> None:
    CELERY_TASKS.labels(getattr(sender, "name", "unknown"), state or "UNKNOWN").inc()


class StateCollector(Collector):
    """What the database and Redis hold, read at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("portal_metrics_source_up", "Whether this scrape could read the source.",
                               labels=["source"])
        for source, read in (("database", self.database), ("redis", self.redis)):
            try:
                families = list(read())
            except Exception:  # noqa: BLE001 - a scrape reports the source as down, never fails
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    def database(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Min, Q
        from django.utils import timezone

        from evals.models import BenchmarkRun, EvalRun
        from gateway.models import SyncOutbox

        outbox = SyncOutbox.objects.filter(done_at=None).aggregate(
            pending=Count("pk"), failing=Count("pk", filter=Q(attempts__gt=0)), oldest=Min("created_at"))
        yield GaugeMetricFamily("portal_outbox_pending", "Changes not yet pushed to the gateway.",
                                value=outbox["pending"])
        yield GaugeMetricFamily("portal_outbox_failing", "Changes not yet pushed whose push failed at least once.",
                                value=outbox["failing"])
        oldest = outbox["oldest"]
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("portal_outbox_oldest_pending_seconds", "Age of the oldest change not yet pushed.",
                                value=max(age, 0.0))
        for name, model, what in (("portal_eval_runs", EvalRun, "Evaluation runs"),
                                  ("portal_benchmark_runs", BenchmarkRun, "Benchmark runs")):
            family = GaugeMetricFamily(name, f"{what} by status.", labels=["status"])
            counts = dict(model.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
            from evals.models import RunStatus

            for status in RunStatus.values:
                family.add_metric([status], counts.get(status, 0))
            yield family

    def redis(self) -> Iterator[GaugeMetricFamily]:
        from gateway.plugin import contract
        from gateway.redis_connection import redis_client

        r = redis_client()
        pending = lag = 0
        oldest_age = 0.0
        if r.exists(contract.USAGE_STREAM):
            for group in r.xinfo_groups(contract.USAGE_STREAM):
                if group["name"] == contract.USAGE_GROUP:
                    pending = int(group["pending"])
                    lag = int(group.get("lag") or 0)
            first = r.xrange(contract.USAGE_STREAM, count=1)
            if first:
                oldest_age = max(time.time() - int(str(first[0][0]).split("-")[0]) / 1000, 0.0)  # id: <ms>-<n>
        yield GaugeMetricFamily("portal_usage_stream_pending",
                                "Usage events delivered to a consumer and not yet written.", value=pending)
        yield GaugeMetricFamily("portal_usage_stream_lag", "Usage events not yet delivered to a consumer.", value=lag)
        yield GaugeMetricFamily("portal_usage_stream_oldest_seconds", "Age of the oldest usage event not yet written.",
                                value=oldest_age)


def exposition() -> bytes:
    state = prom.CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    if MULTIPROC_DIR:
        counted = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
        return prom.generate_latest(counted) + prom.generate_latest(state)
    return prom.generate_latest(prom.REGISTRY) + prom.generate_latest(state)


def allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and given[:7].lower() == "bearer " and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        return True
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n, strict=False) for n in networks)
    return False


@csrf_exempt  # it changes nothing; a POST must get the same 404 as everyone else, not CSRF's 403
def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD") or not allowed(request):
        raise Http404
    return HttpResponse(exposition(), content_type=prom.CONTENT_TYPE_LATEST)
