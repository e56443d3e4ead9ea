"""The web UI in a real browser: Debian's Chromium driven by Playwright.
Screenshots go to test-artifacts/screenshots/. The keys, credentials and routes journeys are in
test_gateway_journeys.py."""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from gateway import usage
from tests.factories import Tenant

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser_page: Any) -> Any:
    """A page of the session's one Chromium (tests/web/conftest.py): a second Playwright in the same
    session fails ("Sync API inside the asyncio loop") once another browser test ran first."""
    return browser_page(viewport={"width": 1280, "height": 900})


def seed_usage(t: Tenant) -> None:
    now = time.time()
    usage.store([{"request_id": uuid.uuid4().hex, "ts": now - 86400 * (i % 12), "key_id": t.key.pk,
                  "key_hash": "x", "org": t.org.pk, "team": t.team.pk, "project": t.project.pk,
                  "owner": "member@acme.test", "route": ("chat", "code")[i % 2], "group": "acme/chat",
                  "prompt_tokens": 100, "completion_tokens": 50, "cost_nano": 20_000_000 * (1 + i % 5),
                  "latency_ms": 300 + i, "status": "success" if i % 9 else "error"} for i in range(60)])


@pytest.mark.django_db(transaction=True)
def test_the_overview_draws_the_usage_charts(live_server: Any, acme: Tenant, page: Any) -> None:
    seed_usage(acme)
    owner = acme.users["owner"]
    owner.set_password("pw-for-tests-1234")
    owner.save()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", "pw-for-tests-1234")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/orgs/acme/")
    page.wait_for_selector("#spend-chart figure[data-drawn]")
    assert page.locator("#spend-chart .chart-data tbody tr").count() == 30
    assert "requests (" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)



@pytest.mark.django_db(transaction=True)
def test_evaluation_pages_show_progress_and_scores(live_server: Any, acme: Tenant, page: Any) -> None:
    from evals.models import EvalRun, EvalScore, Evaluator, EvaluatorVersion
    from evals.templates import template

    ev = Evaluator.objects.create(project=acme.project, name="helpfulness")
    definition = {k: v for k, v in template("helpfulness").items() if k != "description"}
    version = EvaluatorVersion.objects.create(evaluator=ev, version=1, judge_route=acme.route, **definition)
    window = {"window_start": timezone.now() - dt.timedelta(hours=1), "window_end": timezone.now()}  # runs of traces
    done = EvalRun.objects.create(project=acme.project, evaluator_version=version, status="succeeded", considered=8, **window,
                                  sampled=8, scored=8, processed=8, total=8, mean_score=3.5,
                                  distribution={"2": 2, "4": 5, "5": 1}, judge_cost="0.0123")
    for i, value in enumerate([2, 2, 4, 4, 4, 4, 4, 5]):
        EvalScore.objects.create(project=acme.project, evaluator_version=version, trace_id=f"trace-{i}", run=done,
                                 status="scored", value=value, comment=f"reason {i}")
    EvalRun.objects.create(project=acme.project, evaluator_version=version, status="running", processed=3, total=10,
                           **window)
    owner = acme.users["owner"]
    owner.set_password("pw-for-tests-1234")
    owner.save()
    page.goto(f"{live_server.url}/login/?next=/orgs/acme/projects/{acme.project.pk}/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", "pw-for-tests-1234")
    page.click("button[type=submit]")
    page.wait_for_selector("#runs")
    bar = page.locator("#runs .progress > span").first
    assert bar.evaluate("e => e.style.width") == "30%"  # data-pct, set by app.js (the CSP refuses style="")
    assert "3/10" in page.inner_text("#runs")
    page.screenshot(path=str(SHOTS / "project.png"), full_page=True)
    page.click(f"#runs a:text-is(\"#{done.pk}\")")
    page.wait_for_selector("figure[data-drawn]")
    assert page.locator(".chart-data tbody tr").count() == 3
    assert "reason 0" in page.inner_text("main") and "3.50" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
