"""Journeys through the keys, credentials and routes pages in a real browser (Chromium + Playwright), the
first against the real gateway (two LiteLLM proxies with the plugin and a Celery worker: tests/e2e/stack.py)
and a provider stand-in behind it. Each page ends in `check_page` (axe-core, screenshots at both sizes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.models import KeyStatus, ModelRoute, ProviderCredential, VirtualKey
from gateway.services import keys
from portal.access import actor_for_user
from tests.e2e.helpers import chat, until
from tests.e2e.stack import Stack
from tests.factories import Tenant
from tests.llm_standin import LLMStandin
from tests.web.conftest import check_page, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ANSWER = "hello from the provider stand-in"


@pytest.mark.e2e
def test_credential_route_test_key_copy_and_a_call_through_the_real_gateway(
        stack: Stack, acme: Tenant, live_server: Any, browser_page: Any, settings: Any) -> None:
    gateway = stack.gateways[0].url
    settings.GATEWAY_PUBLIC_URL = settings.GATEWAY_INTERNAL_URL = gateway
    llm = LLMStandin(lambda body: ANSWER).start()
    try:
        page = browser_page()
        sign_in(page, live_server, acme.users["owner"])
        base = f"{live_server.url}/orgs/{acme.org.slug}"

        # a credential for an OpenAI-compatible server (the provider stand-in)
        page.goto(f"{base}/keys/")
        page.click("header nav >> text=Credentials")
        page.click("#add-credential >> text=OpenAI-compatible")
        check_page(page, "credential-new")
        page.fill("#name", "acme-standin")
        page.fill("#settings-api_base", f"{llm.url}/v1")
        page.fill("#secrets-api_key", "sk-standin-secret")
        page.click("#credential-form button[type=submit]")
        page.wait_for_selector("text=Credential 'acme-standin' created.")
        assert "sk-standin-secret" not in page.content()
        check_page(page, "credentials")
        credential = ProviderCredential.objects.get(name="acme-standin")

        # a route on it, with prices (so the call has a cost), then its test through the gateway
        page.click("header nav >> text=Routes")
        page.click("text=New route")
        page.fill("#name", "assistant")
        page.fill("#description", "the provider stand-in")
        page.fill("#input_cost_per_million", "2")
        page.fill("#output_cost_per_million", "8")
        page.select_option("#dep-0-credential", str(credential.pk))
        page.fill("#dep-0-model", "standin-model")
        check_page(page, "route-new")
        page.click("#route-form button[type=submit]")
        page.wait_for_selector("text=Route 'assistant' created.")
        page.click("#test summary")
        page.fill("#test-prompt", "Say hello")
        page.click("#test-form button[type=submit]")
        result = page.wait_for_selector("#test-result")
        assert ANSWER in result.inner_text(), result.inner_text()
        assert float(page.inner_text("#test-latency").split()[0]) > 0
        assert float(page.inner_text("#test-cost").lstrip("$")) > 0
        assert llm.requests and llm.requests[-1]["max_tokens"] == 256
        check_page(page, "route-tested")
        test_key = VirtualKey.objects.get(name="route test: assistant")
        assert test_key.status == KeyStatus.REVOKED and test_key.owner == acme.users["owner"]
        page.click("header nav >> text=Routes")
        check_page(page, "routes")

        # a key for the route: copy it with the button, download providers.json, call the gateway
        page.click("header nav >> text=Keys")
        page.click("#issue summary")
        page.fill("#name", "browser key")
        page.select_option("#project", str(acme.project.pk))
        page.check(f"#route-{ModelRoute.objects.get(organization=acme.org, name='assistant').pk}")
        page.fill("#max_budget", "5")
        check_page(page, "keys-form")
        page.click("#issue-key button[type=submit]")
        plaintext = page.inner_text("#plaintext").strip()
        page.click("button[data-copy='#plaintext']")
        page.wait_for_selector("button[data-copy='#plaintext']:has-text('Copied')")
        assert page.evaluate("navigator.clipboard.readText()") == plaintext
        assert f"--apikey {plaintext} --modelid assistant --baseurl {gateway}/v1" in page.inner_text("#cline-auth")
        with page.expect_download() as download_info:
            page.click("#download-providers-json")
        download = download_info.value
        assert download.suggested_filename == "providers.json"
        providers = json.loads(Path(download.path()).read_text())
        assert providers["providers"]["litellm"]["settings"] == {
            "provider": "litellm", "apiKey": plaintext, "model": "assistant", "baseUrl": f"{gateway}/v1"}
        check_page(page, "key-issued")

        reply = chat(gateway, plaintext, model="assistant")
        assert reply.choices[0].message.content == ANSWER

        # the call on the key's page, once the usage consumer has written it
        page.click("text=Done")
        key = VirtualKey.objects.get(name="browser key")

        def counted() -> bool:
            page.goto(f"{base}/keys/{key.pk}/?days=7")
            return "1 request (0 errors)" in page.inner_text("#usage")

        until(counted, 20, 0.5)
        assert "Rotate" in page.inner_text("#actions") and "Block" in page.inner_text("#actions")
        check_page(page, "key")
    finally:
        llm.stop()


def test_a_member_sees_only_its_teams_keys_and_cannot_rotate_others(
        acme: Tenant, live_server: Any, browser_page: Any) -> None:
    from portal import services
    from portal.access import system_actor

    system = system_actor(acme.org, "tests")
    other_team = services.team_create(actor=system, data={"name": "acme-research"})
    other_project = services.project_create(actor=system, data={"name": "acme-lab", "team": other_team})
    keys.key_create(actor=system, data={"name": "acme research key", "team": other_team, "project": other_project})
    teammate = keys.key_create(actor=actor_for_user(acme.org, acme.users["team_admin"]), data={
        "name": "acme team admin key", "team": acme.team, "project": acme.project,
        "owner": acme.users["team_admin"]}).key

    page = browser_page()
    sign_in(page, live_server, acme.users["member"])
    base = f"{live_server.url}/orgs/{acme.org.slug}"
    page.goto(f"{base}/keys/")
    listing = page.inner_text("#keys")
    assert "acme member key" in listing and "acme team admin key" in listing and "acme research key" not in listing
    assert page.locator("header nav >> text=Credentials").count() == 0
    check_page(page, "keys-member")

    page.click("#keys >> text=acme team admin key")
    assert page.locator("#actions").count() == 0  # no rotate, block or revoke on a team-mate's key
    # a forged rotation (the form the owner would see) is refused by the service
    page.evaluate("""([url, token]) => { const f = document.createElement('form'); f.method = 'post'; f.action = url;
        for (const [n, v] of [['csrfmiddlewaretoken', token], ['grace_period_seconds', '0']]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit(); }""",
                  [f"/orgs/{acme.org.slug}/keys/{teammate.pk}/rotate/",
                   next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")])
    page.wait_for_selector("text=Not allowed")
    assert page.title().startswith("Not allowed")
    check_page(page, "not-allowed")
    teammate.refresh_from_db()
    assert teammate.rotated_at is None

    page.goto(f"{base}/keys/{acme.key.pk}/")
    page.click("#edit summary")
    page.fill("#edit-max_budget", "5")
    page.fill("#edit-rpm_limit", "abc")
    page.click("#edit-key button[type=submit]")
    page.wait_for_selector("#edit-rpm_limit-error")
    check_page(page, "key-edit-error")
    page.fill("#edit-rpm_limit", "")
    page.click("#edit-key button[type=submit]")
    page.wait_for_selector("text=Key 'acme member key' saved.")
    acme.key.refresh_from_db()
    assert acme.key.max_budget == 5
    page.on("dialog", lambda dialog: dialog.accept())
    page.select_option("#grace_period_seconds", "300")
    page.click("#actions button:has-text('Rotate')")
    page.wait_for_selector("text=The old key keeps working for 300 seconds.")
    page.click("text=Done")
    page.click("#actions button:has-text('Revoke')")
    page.wait_for_selector("text=revoke done")
    check_page(page, "key-member")
    acme.key.refresh_from_db()
    assert acme.key.status == KeyStatus.REVOKED
    assert ModelRoute.objects.filter(organization=acme.org).count() == 1
