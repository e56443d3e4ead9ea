"""The evaluation agent's pages in a real browser (Debian's Chromium through Playwright): a report with
findings, steps and a conversation; a running report whose progress moves and that reloads itself when
done; the start form (a bad bound, then an investigation started); a question asked. The
Content-Security-Policy refuses nothing, axe-core finds no serious violation; screenshots in
test-artifacts/screenshots/agent-*.png."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from evals import tasks_agent
from evals.agent.models import AgentMessage, AgentReport
from tests.factories import Tenant
from tests.web.conftest import check_page, sign_in, wait_until
from tests.web.test_agent_pages import make_agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_worker(monkeypatch: Any) -> list[int]:
    """The agent's tasks are not run (no worker here): the test plays the worker's part."""
    queued: list[int] = []
    monkeypatch.setattr(tasks_agent.agent_investigate, "delay", lambda pk: queued.append(pk))
    monkeypatch.setattr(tasks_agent.agent_answer, "delay", lambda pk: queued.append(pk))
    return queued


def test_a_report_with_findings_steps_and_a_conversation(live_server: Any, acme: Tenant, browser_page: Any,
                                                         no_worker: list[int]) -> None:
    agent = make_agent(acme)
    page = browser_page()
    base = f"{live_server.url}/orgs/{acme.org.slug}/projects/{acme.project.pk}"
    sign_in(page, live_server, acme.users["owner"])
    page.goto(f"{base}/agent/{agent.report.pk}/")
    finding = page.locator("#finding-0")
    assert "acme billing refusals" in finding.inner_text() and "25.0% of the window" in finding.inner_text()
    assert finding.get_by_role("link", name="acme-t1 (in Langfuse)").get_attribute("href") == (
        "https://langfuse.example/project/lfp-acme/traces/acme-t1")
    page.wait_for_selector("#findings figure[data-drawn]")  # the chart of traces per finding
    finding.get_by_role("link", name="step 1 · search_traces").click()
    assert page.url.endswith("#step-1")
    assert page.locator("#step-1:target").count() == 1 and "billing" in page.locator("#step-1 pre.args").inner_text()
    page.locator("#step-1 details.digest summary").click()
    assert '"matched": 8' in page.locator("#step-1 details.digest pre").inner_text()
    assert "trace not found: nope" in page.locator("#step-2").inner_text()
    page.locator("#dropped summary").click()
    assert "not in the cited steps" in page.locator("#dropped").inner_text()
    assert "acme: since Monday." in page.locator("#conversation").inner_text()
    assert page.locator("#agent-progress .bar span").evaluate("e => e.style.width") == "100%"  # done
    # the answer's evidence links to its own step, folded under the answer: the link unfolds it
    assert not page.locator("#step-4").is_visible()
    page.locator("#conversation .evidence").get_by_role("link", name="step 4").click()
    assert page.locator("#step-4").is_visible() and "compare" in page.locator("#step-4").inner_text()
    check_page(page, "agent-report")

    page.get_by_label("Ask a follow-up question").fill("Which users see the refusals?")
    page.get_by_role("button", name="Ask").click()
    page.wait_for_url(f"{base}/agent/{agent.report.pk}/#conversation")
    assert "Which users see the refusals?" in page.locator("#conversation").inner_text()
    assert "The agent is answering" in page.locator("#ask-wait").inner_text()
    answer = AgentMessage.objects.filter(report=agent.report, role="assistant").latest("pk")
    assert no_worker == [answer.pk]
    AgentMessage.objects.filter(pk=answer.pk).update(status="succeeded", content="Mostly users of the EU tenant.")
    page.get_by_text("Mostly users of the EU tenant.").wait_for()  # the page reloaded itself
    assert page.locator("#ask").count() == 1
    check_page(page, "agent-report-answered")


def test_start_an_investigation_then_watch_its_progress(live_server: Any, acme: Tenant, browser_page: Any,
                                                        no_worker: list[int]) -> None:
    make_agent(acme)
    page = browser_page()
    base = f"{live_server.url}/orgs/{acme.org.slug}/projects/{acme.project.pk}"
    sign_in(page, live_server, acme.users["team_admin"])
    page.goto(f"{base}/agent/")
    page.get_by_role("link", name="Agent").first.wait_for()
    page.get_by_label("Route").select_option("chat")
    page.get_by_label("Focus").fill("refusals on billing questions")
    page.get_by_label("Max steps").fill("0")
    page.get_by_role("button", name="Start investigation").click()
    assert "greater than or equal to 1" in page.locator("#agent-start").inner_text()
    assert page.get_by_label("Focus").input_value() == "refusals on billing questions"  # nothing lost
    check_page(page, "agent-start-errors")
    page.get_by_label("Max steps").fill("10")
    page.get_by_label("Max spend ($)").fill("0.50")
    page.get_by_role("button", name="Start investigation").click()
    page.wait_for_url(f"{base}/agent/*/")
    report = AgentReport.objects.latest("pk")
    assert no_worker == [report.pk] and report.max_steps == 10 and str(report.max_spend) == "0.5000"
    assert page.locator("#agent-status").text_content() == "queued"
    AgentReport.objects.filter(pk=report.pk).update(status="running", steps_taken=4, tokens_used=3000,
                                                    started_at=timezone.now() - dt.timedelta(seconds=30))
    wait_until(page, "document.querySelector('#agent-progress .bar span').style.width === '40%'")
    assert page.locator("[data-field=tokens_used]").text_content() == "3000"
    assert int(page.locator("[data-field=elapsed_seconds]").text_content() or 0) >= 30
    assert page.locator("#agent-status").text_content() == "running"
    check_page(page, "agent-report-running")
    AgentReport.objects.filter(pk=report.pk).update(status="succeeded", steps_taken=6,
                                                    summary="Nothing alarming this week.")
    page.get_by_text("Nothing alarming this week.").wait_for()  # reloaded when done
    assert page.locator("#agent-status").text_content() == "succeeded"
    page.goto(f"{base}/agent/")
    check_page(page, "agent-reports")
    page.goto(f"{base}/agent/schedules/")
    check_page(page, "agent-schedules")
