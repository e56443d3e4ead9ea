"""The project dashboard (portal/web/dashboards): own usage by day, route and key over a chosen range;
Langfuse metrics read from the cache the task fills (evals/dashboard_metrics.py), never fetched by the page."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from typing import Any

import pytest
from django.test import Client

from evals import dashboard_metrics
from evals.models import LangfuseConnection
from gateway import usage
from tests.factories import Tenant, connect_langfuse
from tests.factories import web_client as login


def dashboard(t: Tenant, query: str = "") -> str:
    return f"/orgs/{t.org.slug}/projects/{t.project.pk}/{query}"


def record(t: Tenant, *, days_ago: float, route: str = "chat", cost: float = 0.01, latency_ms: int = 300,
           status: str = "success", tokens: tuple[int, int] = (100, 50)) -> dict[str, Any]:
    return {"request_id": uuid.uuid4().hex, "ts": time.time() - 86400 * days_ago, "key_id": t.key.pk,
            "key_hash": "x", "org": t.org.pk, "team": t.team.pk, "project": t.project.pk,
            "owner": f"member@{t.org.slug}.test", "route": route, "group": f"{t.org.slug}/{route}",
            "prompt_tokens": tokens[0], "completion_tokens": tokens[1], "cost_nano": int(cost * 1e9),
            "latency_ms": latency_ms, "status": status}


def chart_data(html: str, element_id: str) -> dict[str, Any]:
    block = html.split(f'id="{element_id}"', 1)[1]
    match = re.search(r'<script type="application/json">(.*?)</script>', block, re.S)
    assert match, element_id
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_the_dashboard_shows_usage_per_day_route_and_key_for_the_chosen_range(acme: Tenant) -> None:
    usage.store([record(acme, days_ago=0, cost=0.5, latency_ms=200),
                 record(acme, days_ago=0, route="code", cost=0.25, status="error"),
                 record(acme, days_ago=20, cost=2.0)])
    client = login(acme, "viewer")
    html = client.get(dashboard(acme)).content.decode()  # 30 days by default
    assert "$2.75" in html and f"{acme.org.slug} member key" in html
    assert re.search(r"<code>chat</code></td><td>2</td>", html) and re.search(r"<code>code</code></td><td>1</td>", html)
    requests = chart_data(html, "requests-chart")
    assert len(requests["labels"]) == 30 and requests["labels"][-1] == dt.datetime.now(dt.UTC).date().isoformat()
    assert [d["label"] for d in requests["datasets"]] == ["requests", "errors"]
    assert requests["datasets"][0]["data"][-1] == 2 and requests["datasets"][1]["data"][-1] == 1
    latency = chart_data(html, "latency-chart")
    assert [d["label"] for d in latency["datasets"]] == ["p50", "p95"] and latency["unit"] == " ms"
    assert chart_data(html, "error-rate-chart")["datasets"][0]["data"][-1] == 50.0

    week = client.get(dashboard(acme, "?range=7")).content.decode()
    assert "$0.75" in week and "$2.75" not in week and len(chart_data(week, "cost-chart")["labels"]) == 7
    quarter = client.get(dashboard(acme, "?range=90")).content.decode()
    assert len(chart_data(quarter, "cost-chart")["labels"]) == 90

    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=20)).date().isoformat()
    custom = client.get(dashboard(acme, f"?range=custom&start={day}&end={day}")).content.decode()
    assert "$2.00" in custom and chart_data(custom, "cost-chart")["labels"] == [day]
    assert f'value="{day}"' in custom


@pytest.mark.django_db
@pytest.mark.parametrize("query, field, message", [
    ("?range=custom&start=2026-11-10&end=2026-11-01", "end", "must not be before"),
    ("?range=custom&start=not-a-date&end=2026-11-01", "start", "Enter a valid date"),
    ("?range=custom&start=2020-01-01&end=2021-06-01", "start", "At most 366 days"),
    ("?range=custom&start=2026-11-01", "end", "Enter the last day"),
    ("?range=custom&start=2026-11-01&end=2999-01-01", "end", "cannot be in the future"),
    ("?range=365", "range", "Select a valid choice"),
    ("?range=custom&start=%3Cscript%3E", "start", "Enter a valid date"),
])
def test_a_bad_range_is_a_400_with_the_error_next_to_its_field(acme: Tenant, query: str, field: str,
                                                               message: str) -> None:
    page = login(acme, "viewer").get(dashboard(acme, query))
    html = page.content.decode()
    assert page.status_code == 400
    if field in ("start", "end"):
        assert re.search(rf'id="{field}-error">[^<]*{message}', html), html
    else:
        assert message in html or "cannot be shown" in html
    assert "<script>" not in html.split("<main", 1)[1].split("</main>", 1)[0].replace(
        '<script type="application/json">', "")


@pytest.mark.django_db
def test_another_organizations_project_answers_404(acme: Tenant, globex: Tenant) -> None:
    outsider = login(globex, "owner")
    assert outsider.get(dashboard(acme)).status_code == 404
    assert outsider.post(dashboard(acme), {"range": "30"}).status_code == 404
    # its own organization's URL with the other organization's project id
    assert outsider.get(f"/orgs/{globex.org.slug}/projects/{acme.project.pk}/").status_code == 404
    assert Client().get(dashboard(acme)).status_code == 302


@pytest.mark.django_db
def test_langfuse_metrics_come_from_the_cache_with_deep_links_and_the_page_never_calls_langfuse(
        acme: Tenant, langfuse_standin: Any) -> None:
    connect_langfuse(acme, langfuse_standin)
    connection = LangfuseConnection.objects.get(project=acme.project)
    lf_project = f"lf-{acme.org.slug}"
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    langfuse_standin.seed_traces(lf_project, 4, start=today - dt.timedelta(days=2, hours=-1),
                                 interval=dt.timedelta(hours=1), cost=0.25, latency=0.8)
    langfuse_standin.seed_traces(lf_project, 2, start=today + dt.timedelta(minutes=1), interval=dt.timedelta(minutes=1),
                                 cost=0.5, latency=1.5)
    ids = langfuse_standin.seed_traces(lf_project, 1, start=today + dt.timedelta(minutes=5))
    with connection.client() as lf:
        lf.create_score({"traceId": ids[0], "name": "helpfulness", "value": 4, "dataType": "NUMERIC"})
        lf.create_score({"traceId": ids[0], "name": "helpfulness", "value": 2, "dataType": "NUMERIC"})

    client = login(acme, "member")
    calls = len(langfuse_standin.requests)
    first = client.get(dashboard(acme)).content.decode()
    assert len(langfuse_standin.requests) == calls  # the page only queued the task
    assert 'id="lf-pending"' in first and dashboard_metrics.is_queued(acme.project.pk, *dashboard_metrics.window(30))

    entry = dashboard_metrics.refresh(acme.project.pk, *dashboard_metrics.window(30))
    assert entry is not None and entry["error"] is None and entry["api"] == "v4"
    calls = len(langfuse_standin.requests)
    html = client.get(dashboard(acme)).content.decode()
    assert len(langfuse_standin.requests) == calls
    traces = chart_data(html, "lf-traces-chart")
    assert traces["datasets"][0]["data"][-3:] == [4, 0, 3]
    assert traces["links"][-1].startswith(f"{langfuse_standin.url}/project/{connection.langfuse_project_id}/traces?filter=")
    assert "timestamp%3Bdatetime%3B%3B%3E%3D%3B" in traces["links"][-1]
    assert chart_data(html, "lf-cost-chart")["datasets"][0]["data"][-1] == pytest.approx(1.0001, abs=1e-3)
    latency = chart_data(html, "lf-latency-chart")
    assert latency["datasets"][1]["data"][-3] == pytest.approx(800, rel=0.05)
    scores = chart_data(html, "lf-scores-chart")
    assert [d["label"] for d in scores["datasets"]] == ["helpfulness"] and scores["datasets"][0]["data"] == [3.0]
    assert 'id="lf-updated"' in html and "Refresh from Langfuse" in html


@pytest.mark.django_db
def test_a_failed_refresh_keeps_the_last_answer_and_says_what_failed(acme: Tenant, langfuse_standin: Any) -> None:
    connect_langfuse(acme, langfuse_standin)
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 3)
    start, end = dashboard_metrics.window(30)
    assert dashboard_metrics.refresh(acme.project.pk, start, end)["error"] is None
    langfuse_standin.inject("GET", r"/metrics", status=401, times=5)
    entry = dashboard_metrics.refresh(acme.project.pk, start, end)
    assert entry is not None and "401" in entry["error"] and sum(d["traces"] for d in entry["days"]) == 3
    html = login(acme, "viewer").get(dashboard(acme)).content.decode()
    assert 'id="lf-error"' in html and "rejected the keys" in html and chart_data(html, "lf-traces-chart")
    assert not dashboard_metrics.is_stale(entry)  # page views do not retry a failure at once


@pytest.mark.django_db
def test_viewers_see_no_refresh_and_their_post_is_refused(acme: Tenant, langfuse_standin: Any) -> None:
    connect_langfuse(acme, langfuse_standin)
    viewer = login(acme, "viewer")
    assert "Refresh from Langfuse" not in viewer.get(dashboard(acme)).content.decode()
    dashboard_metrics.redis_client().flushdb()
    assert viewer.post(dashboard(acme), {"range": "30"}).status_code == 403
    assert not dashboard_metrics.is_queued(acme.project.pk, *dashboard_metrics.window(30))

    member = login(acme, "member")
    answer = member.post(dashboard(acme), {"range": "7"}, follow=True)
    assert answer.redirect_chain[-1][0].endswith("?range=7")
    assert "Refresh queued" in answer.content.decode()
    assert dashboard_metrics.is_queued(acme.project.pk, *dashboard_metrics.window(7))
    again = member.post(dashboard(acme), {"range": "7"}, follow=True)
    assert "already queued" in again.content.decode()


@pytest.mark.django_db
def test_no_langfuse_connection_says_so(acme: Tenant) -> None:
    html = login(acme, "owner").get(dashboard(acme)).content.decode()
    assert "not connected to Langfuse" in html
    answer = login(acme, "member").post(dashboard(acme), {"range": "30"}, follow=True)
    assert "not connected" in answer.content.decode()


@pytest.mark.django_db
def test_an_unavailable_cache_or_broker_is_a_message_not_a_traceback(acme: Tenant, langfuse_standin: Any,
                                                                     monkeypatch: Any) -> None:
    import redis
    from kombu.exceptions import OperationalError

    connect_langfuse(acme, langfuse_standin)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(dashboard_metrics, "cached", down)
    page = login(acme, "member").get(dashboard(acme))
    assert page.status_code == 200 and 'id="lf-unavailable"' in page.content.decode()
    monkeypatch.undo()

    def no_broker(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("broker unreachable")

    monkeypatch.setattr(dashboard_metrics.refresh_metrics, "delay", no_broker)
    answer = login(acme, "member").post(dashboard(acme), {"range": "30"}, follow=True)
    assert answer.status_code == 200 and "could not be queued" in answer.content.decode()
    assert not dashboard_metrics.is_queued(acme.project.pk, *dashboard_metrics.window(30))  # no stale marker


@pytest.mark.django_db
def test_a_v3_langfuse_is_asked_through_the_v1_metrics_api(acme: Tenant) -> None:
    from tests.langfuse_standin.server import LangfuseStandin

    with LangfuseStandin(version=3) as server:
        connect_langfuse(acme, server)
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        server.seed_traces(f"lf-{acme.org.slug}", 5, start=today + dt.timedelta(minutes=1),
                           interval=dt.timedelta(minutes=1), cost=0.2)
        entry = dashboard_metrics.refresh(acme.project.pk, *dashboard_metrics.window(7))
        assert any(r["path"] == "/api/public/metrics" for r in server.requests)
        assert server.violations == []
    assert entry is not None and entry["api"] == "v3" and entry["error"] is None
    assert entry["days"][-1]["traces"] == 5 and entry["days"][-1]["cost"] == pytest.approx(1.0)


@pytest.mark.django_db
def test_the_tasks_fill_the_cache_and_the_schedule_queues_each_connection_once(acme: Tenant, globex: Tenant,
                                                                               langfuse_standin: Any,
                                                                               monkeypatch: Any) -> None:
    connect_langfuse(acme, langfuse_standin)
    connect_langfuse(globex, langfuse_standin)
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 2)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(dashboard_metrics.refresh_metrics, "delay", lambda *args: queued.append(args))
    assert dashboard_metrics.refresh_all_metrics.apply().get() == 2
    assert dashboard_metrics.refresh_all_metrics.apply().get() == 0  # still queued: not twice
    start, end = dashboard_metrics.window(dashboard_metrics.DEFAULT_DAYS)
    assert sorted(queued) == sorted([(t.project.pk, start.isoformat(), end.isoformat()) for t in (acme, globex)])

    dashboard_metrics.refresh_metrics.apply(args=(acme.project.pk, start.isoformat(), end.isoformat()))
    assert sum(d["traces"] for d in dashboard_metrics.cached(acme.project.pk, start, end)["days"]) == 2
    assert dashboard_metrics.cached(globex.project.pk, start, end) is None  # each project its own entry
    dashboard_metrics.refresh_metrics.apply(args=(acme.project.pk, "2020-01-01", end.isoformat()))  # too long
    assert dashboard_metrics.cached(acme.project.pk, dt.date(2020, 1, 1), end) is None


@pytest.mark.django_db
def test_the_demos_stand_in_is_labelled_and_not_linked(acme: Tenant, langfuse_standin: Any, settings: Any) -> None:
    settings.LANGFUSE_STANDIN_URL = langfuse_standin.url
    connect_langfuse(acme, langfuse_standin)
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 2)
    dashboard_metrics.refresh(acme.project.pk, *dashboard_metrics.window(30))
    html = login(acme, "viewer").get(dashboard(acme)).content.decode()
    langfuse = html.split('id="langfuse"', 1)[1]
    assert "Langfuse stand-in" in langfuse and chart_data(html, "lf-traces-chart")["links"] == []
    assert "/traces?" not in langfuse and "All scores in Langfuse" not in langfuse
