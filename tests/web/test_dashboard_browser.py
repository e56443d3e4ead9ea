"""Journeys through the dashboards and the API docs in Chromium: the charts draw with the vendored
Chart.js, show values on hover and from the keyboard, follow the range picker; the API docs draw
with no network beyond this machine."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from evals import dashboard_metrics
from gateway import usage
from tests.factories import Tenant, connect_langfuse
from tests.web.conftest import check_page, sign_in, wait_until
from tests.web.test_dashboard import record


@pytest.mark.django_db(transaction=True)
def test_the_project_dashboard_with_usage_and_langfuse(live_server: Any, acme: Tenant, langfuse_standin: Any,
                                                       browser_page: Any, browser: Any) -> None:
    usage.store([record(acme, days_ago=i % 12, route=("chat", "code")[i % 2], cost=0.02 * (1 + i % 5),
                        latency_ms=200 + 15 * i, status="success" if i % 7 else "error") for i in range(48)]
                + [record(acme, days_ago=45, cost=3.0)])
    connect_langfuse(acme, langfuse_standin)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ids = langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 60, start=today - dt.timedelta(days=10),
                                 interval=dt.timedelta(hours=4), cost=lambda i: 0.001 * (1 + i % 3),
                                 latency=0.6)
    with acme.project.langfuse_connection.client() as lf:
        for i, trace_id in enumerate(ids[::6]):
            lf.create_score({"traceId": trace_id, "name": "helpfulness", "value": 2 + i % 4, "dataType": "NUMERIC"})
    for days in (30, 7):
        dashboard_metrics.refresh(acme.project.pk, *dashboard_metrics.window(days))

    page = browser_page()
    sign_in(page, live_server, acme.users["owner"])
    page.wait_for_selector("#spend-chart figure[data-drawn]")
    check_page(page, "org-overview")

    page.click(f"a:text-is('{acme.project.name}')")
    page.wait_for_selector("#lf-traces-chart figure[data-drawn]")
    assert page.locator("figure[data-drawn]").count() == 9  # 5 usage charts, 4 from Langfuse
    assert page.locator("nav.tabs a[aria-current=page]").inner_text() == "Dashboard"

    # hover: the value of the point under the pointer (the canvas' tooltip, mirrored in the readout)
    canvas = page.locator("#cost-chart canvas")
    box = canvas.bounding_box()
    canvas.hover(position={"x": box["width"] - 12, "y": box["height"] / 2})
    readout = page.locator("#cost-chart .chart-readout")
    today_label = dt.datetime.now(dt.UTC).date().isoformat()
    wait_until(page, "document.querySelector('#cost-chart .chart-readout').textContent.length > 0")
    assert re.fullmatch(rf"{today_label}: \$[0-9.,]+", readout.inner_text()), readout.inner_text()
    tooltip_open = page.evaluate("document.querySelector('#cost-chart figure').chart.tooltip.opacity")
    assert tooltip_open == 1

    # the keyboard: focus the chart, step with the arrows
    page.focus("#latency-chart canvas")
    page.keyboard.press("End")
    latency = page.locator("#latency-chart .chart-readout")
    assert latency.inner_text().startswith(f"{today_label}: p50 ")
    page.keyboard.press("ArrowLeft")
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assert latency.inner_text().startswith(f"{yesterday}: p50 ") and " ms" in latency.inner_text()

    # the Langfuse chart: a day's point links to that day's traces in Langfuse
    page.focus("#lf-traces-chart canvas")
    page.keyboard.press("End")
    assert "opens its details" in page.inner_text("#lf-traces-chart .chart-readout")
    link = page.locator("#lf-traces-chart .chart-data a").last
    assert urlsplit(link.get_attribute("href")).path.endswith("/traces")
    assert "Last updated" in page.inner_text("#lf-updated")
    check_page(page, "dashboard")

    # the range picker: 7 days, then a custom range holding the old request
    page.click(".dash-presets a:text-is('7 days')")
    page.wait_for_selector("#cost-chart figure[data-drawn]")
    assert page.locator("#cost-chart .chart-data tbody tr").count() == 7
    assert "$3.00" not in page.inner_text("#usage-totals")
    old = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=45)).isoformat()
    page.fill("#id_start", old)
    page.fill("#id_end", old)
    page.click("#range-form button[type=submit]")
    page.wait_for_selector("#cost-chart figure[data-drawn]")
    assert page.locator("#cost-chart .chart-data tbody tr").count() == 1
    assert "$3.00" in page.inner_text("#usage-totals")
    assert page.locator("#lf-pending").count() == 1  # that range is not cached yet: the task is queued

    # a bad range: the error sits next to its field
    page.fill("#id_start", today_label)
    page.fill("#id_end", old)
    page.click("#range-form button[type=submit]")
    assert "must not be before" in page.inner_text("#end-error")
    check_page(page, "dashboard-bad-range")

    # without JavaScript: no empty canvases, the numbers as tables, the range links still work
    plain = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    try:
        page = plain.new_page()
        sign_in(page, live_server, acme.users["owner"], next_url=f"/orgs/acme/projects/{acme.project.pk}/")
        assert page.locator(".chart-canvas").first.is_hidden()
        page.click("#cost-chart summary")
        assert page.locator("#cost-chart .chart-data tbody tr").count() == 30
        page.click(".dash-presets a:text-is('90 days')")
        assert page.locator("#cost-chart .chart-data tbody tr").count() == 90
    finally:
        plain.close()


@pytest.mark.django_db(transaction=True)
def test_the_api_docs_draw_with_no_network(live_server: Any, browser_page: Any) -> None:
    page = browser_page()
    refused: list[str] = []

    def only_loopback(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_loopback)
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "LLMOps Portal API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() > 20
    page.locator(".swagger-ui .opblock-summary").first.click()  # an operation opens: the bundle works
    page.wait_for_selector(".swagger-ui .opblock-body")
    assert refused == []
    check_page(page, "api-docs")
