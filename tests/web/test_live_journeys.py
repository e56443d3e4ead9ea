"""A journey through the evaluation pages and the project dashboard in a real browser (Chromium + Playwright)
against the real parts (tests/e2e/stack.py): two LiteLLM proxies with the plugin, a Celery worker, Redis and
the Langfuse stand-in process. A team admin creates an evaluator from a template, starts a run and watches
its bar move to done while the real worker judges the stand-in's traces through the real gateway, reads the
scores (lowest first) and writes the report; then issues a key, calls the gateway with it, and sees the call
on the project dashboard once the usage consumer has stored it.

The judge is a provider stand-in (tests/llm_standin.py) behind an OpenAI-compatible credential rather than a
`mock_response` route: a mock answers the same score for every trace, and "lowest first" could then not fail.
It grades each trace by its content, and answers the report prompt with a group naming the lowest traces."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from gateway.models import UsageRecord, VirtualKey
from tests.e2e.helpers import until
from tests.e2e.stack import Stack
from tests.factories import Tenant
from tests.llm_standin import LLMStandin
from tests.web.conftest import check_page, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TRACES = 15
CALL_COST = Decimal("0.00045")  # the stand-in's 50 prompt and 20 completion tokens at $3 and $15 a million
JUDGE_LATENCY = 1.0  # s a judgement: 15 traces, 4 at a time, saved every 5: the bar has time to move
#: Records every width the run's bar takes, across the reload that shows the scores (sessionStorage).
RECORD_BAR = """(() => {
  const seen = () => JSON.parse(sessionStorage.getItem("bar") || "[]");
  const note = () => { const s = document.querySelector("#run-progress .bar span");
    if (s) { const w = seen(); w.push(s.style.width); sessionStorage.setItem("bar", JSON.stringify(w)); } };
  document.addEventListener("DOMContentLoaded", () => { note();
    new MutationObserver(note).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["style"]});
  });
})();"""


def score_of(i: int) -> int:
    return 5 - i % 5  # 5, 4, 3, 2, 1, 5, ...: the first traces are not the lowest


def grading_judge(body: dict[str, Any]) -> str:
    """A judge's verdict by the trace's answer ("answer {i}"), or a report naming the lowest traces."""
    prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
    if "You review the weakest results" in prompt:
        lowest = [tid for tid, score in re.findall(r"- id: (\S+)\n  score: (\S+)", prompt) if float(score) == 1]
        return json.dumps({"summary": "Every fifth answer misses the point.", "groups": [
            {"pattern": "Answers that miss the point", "explanation": "The answer names a number, not a step.",
             "suggestion": "Tell the assistant to end with the concrete next step.", "trace_ids": lowest}]})
    found = re.search(r"Assistant answer:.*?answer (\d+)", prompt, re.S)
    assert found, prompt
    i = int(found.group(1))
    return json.dumps({"reasoning": f"graded answer {i}", "score": score_of(i)})


def money(value: Decimal, places: str) -> str:
    return str(value.quantize(Decimal(places), ROUND_HALF_UP))  # as Django's floatformat shows it


def totals_requests(page: Any) -> int:
    return int(page.locator("#usage-totals .n").first.inner_text().strip())


def test_evaluate_live_traces_write_the_report_then_a_call_on_the_dashboard(
        stack: Stack, acme: Tenant, live_server: Any, browser_page: Any, settings: Any) -> None:
    gateway = stack.gateways[0].url
    settings.GATEWAY_PUBLIC_URL = settings.GATEWAY_INTERNAL_URL = gateway
    llm = LLMStandin(grading_judge, latency=JUDGE_LATENCY).start()
    try:
        # (1) the project is connected to its Langfuse project in the stand-in, which holds traces
        lf = f"lf-{acme.org.slug}-{acme.project.pk}"
        stack.langfuse.add_project(lf, lf, f"pk-{lf}", f"sk-{lf}")
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        ids = stack.langfuse.seed_traces(lf, TRACES, start=since + dt.timedelta(minutes=1), name="support-chat")
        owner, admin = acme.client("owner"), acme.client("admin")
        response = owner.put(acme.url(f"projects/{acme.project.pk}/langfuse/"), {
            "host": stack.langfuse.url, "public_key": f"pk-{lf}", "secret_key": f"sk-{lf}"}, format="json")
        assert response.status_code in (200, 201), response.content
        response = admin.post(acme.url("credentials/"), {
            "name": "judge-standin", "provider": "openai_compatible", "settings": {"api_base": f"{llm.url}/v1"}},
            format="json")
        assert response.status_code == 201, response.content
        response = admin.post(acme.url("routes/"), {"name": "judge", "deployments": [
            {"credential": response.json()["id"], "model": "judge-standin"}],
            "input_cost_per_million": 3, "output_cost_per_million": 15}, format="json")  # CALL_COST
        assert response.status_code == 201, response.content

        # (2) a team admin creates an evaluator from a template, on the judge route
        page = browser_page()
        page.context.add_init_script(RECORD_BAR)
        sign_in(page, live_server, acme.users["team_admin"])
        base = f"{live_server.url}/orgs/{acme.org.slug}/projects/{acme.project.pk}"
        page.goto(f"{base}/evaluators/")
        page.get_by_label("Start from a template").select_option("helpfulness")
        page.locator("#ev-route").select_option("judge")
        wait_until(page, "document.getElementById('ev-preview').textContent.includes('answer ')",
                   timeout=10_000)  # rendered on one of the stand-in's traces
        page.get_by_role("button", name="Create evaluator").click()
        page.wait_for_url(f"{base}/evaluators/*/")
        assert "Evaluator 'helpfulness' created" in page.content()

        # ... starts a run over the last hours' traces and watches the bar move to done
        page.get_by_role("navigation", name="Project").get_by_role("link", name="Runs").click()
        page.wait_for_url(f"{base}/runs/")
        page.get_by_label("Evaluator").select_option(label="helpfulness")
        page.get_by_label("Traces from").fill((since - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url(f"{base}/runs/*/")
        page.wait_for_selector(f"#scores tbody tr:nth-child({TRACES})", timeout=60_000)  # reloaded when done
        assert page.locator("#run-status").text_content() == "succeeded"
        assert page.evaluate("document.querySelector('#run-progress .bar span').style.width") == "100%"
        widths = [float(w.rstrip("%")) for w in json.loads(page.evaluate("sessionStorage.getItem('bar')"))]
        assert widths[0] < 100 and widths[-1] == 100, widths  # it was working when the page first showed
        assert any(0 < w < 100 for w in widths), widths  # and moved through a part done, polling
        assert widths == sorted(widths), widths

        # the scores, lowest first, each linked to its trace
        rows = page.locator("#scores tbody tr")
        shown = [float(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(rows.count())]
        assert shown == sorted(score_of(i) for i in range(TRACES)), shown
        lowest = {ids[i] for i in range(TRACES) if score_of(i) == 1}
        href = rows.first.locator("a").get_attribute("href") or ""
        assert href.rsplit("/", 1)[-1] in lowest, href
        assert page.locator("[data-field=mean_score]").inner_text() == "3.00"
        assert page.locator("[data-field=scored]").inner_text() == str(TRACES)
        assert page.locator("[data-field=judge_cost]").inner_text() == money(TRACES * CALL_COST, "0.0001")
        judgements = [r for r in llm.requests if "You review" not in json.dumps(r)]
        assert len(judgements) == TRACES
        in_langfuse = stack.langfuse.project(lf).scores.values()  # written back by the worker, once a trace
        assert sorted(s.trace_id for s in in_langfuse) == sorted(ids)
        assert {s.name for s in in_langfuse} == {"helpfulness"} and stack.langfuse.violations == []

        # (3) the report, written through the judge route by the worker
        page.get_by_label("Write through route").select_option("judge")
        page.get_by_role("button", name="Write report").click()
        page.wait_for_selector("text=The report is being written")

        def reported() -> bool:
            page.reload()
            return "succeeded" in (page.locator("#report-h .badge").text_content(timeout=5_000) or "")

        until(reported, 30, 0.5)
        report = page.locator("#report").inner_text()
        assert "Every fifth answer misses the point." in report and "Answers that miss the point" in report
        linked = [a.get_attribute("href") or "" for a in page.locator("#report a").all()]
        assert {h.rsplit("/", 1)[-1] for h in linked} == lowest, linked
        assert len(llm.requests) == TRACES + 1  # one report call
        check_page(page, "live-run")

        # (4) the judge's calls and the report's are the project's usage (its service key); then a key
        service_calls = TRACES + 1
        until(lambda: UsageRecord.objects.filter(project=acme.project).count() == service_calls, 20, 0.2)
        page.goto(f"{base}/")
        before = totals_requests(page)
        assert before == service_calls, before
        assert page.locator("#usage-totals .n").nth(1).inner_text() == "$" + money(service_calls * CALL_COST, "0.01")

        page.goto(f"{live_server.url}/orgs/{acme.org.slug}/keys/")
        page.click("#issue summary")
        page.fill("#name", "live journey key")
        page.select_option("#project", str(acme.project.pk))
        page.click("#issue-key button[type=submit]")
        plaintext = page.inner_text("#plaintext").strip()
        assert len(plaintext) > 20, plaintext
        key = VirtualKey.objects.get(name="live journey key")
        assert key.project_id == acme.project.pk

        answer = httpx.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {plaintext}"},
                            json={"model": "chat", "messages": [{"role": "user", "content": "Say hello"}]},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "hello from acme"

        def on_dashboard() -> bool:
            page.goto(f"{base}/")
            return totals_requests(page) == before + 1

        until(on_dashboard, 20, 0.5)
        assert "live journey key" in page.locator("#top-keys").inner_text()
        check_page(page, "live-dashboard")
    finally:
        llm.stop()
