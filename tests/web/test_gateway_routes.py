"""Routes in the web UI (portal/web/gateway/routes.py): everyone reads them; org admins create, edit and
delete them with deployments, fallbacks, retries and teams, and test one with a bounded call through the
gateway on a short-lived key (route_test.py). Another organization's routes answer 404."""

from __future__ import annotations

from typing import Any

import pytest

from evals.gateway_client import Completion, GatewayCallError
from gateway.models import KeyStatus, ModelRoute, VirtualKey
from portal.models import AuditLogEntry
from portal.tokens import sha256_hex
from portal.web.gateway import route_test
from tests.factories import Tenant
from tests.web.test_pages import login

pytestmark = pytest.mark.django_db


def url(t: Tenant, path: str = "") -> str:
    return f"/orgs/{t.org.slug}/routes/{path}"


def route_post(**fields: Any) -> dict[str, Any]:
    body = {"name": "code", "description": "for coding", "is_active": "on", "num_retries": "2",
            "timeout_seconds": "60", "input_cost_per_million": "1.5", "output_cost_per_million": "6",
            "deployment_rows": "3", "dep-0-credential": "", "dep-0-model": "m1", "dep-0-weight": "1",
            "dep-0-mock_response": "hi from code", "dep-1-model": "", "dep-2-model": "", "fallbacks": ["chat", ""]}
    return body | fields


def test_create_a_route_with_deployments_fallbacks_and_teams(acme: Tenant) -> None:
    admin = login(acme, "admin")
    form = admin.get(url(acme, "new/")).content.decode()
    assert 'name="dep-0-credential"' in form and f'value="{acme.team.pk}"' in form
    response = admin.post(url(acme, "new/"), route_post(**{
        "dep-1-credential": str(acme.credential.pk), "dep-1-model": "gpt-4o-mini", "dep-1-priority": "1",
        "dep-1-params": '{"temperature": 0.2}', "allowed_teams": [str(acme.team.pk)]}))
    assert response.status_code == 302, response.content.decode()[:3000]
    route = ModelRoute.objects.get(organization=acme.org, name="code")
    deployments = list(route.deployments.all())
    assert [(d.model, d.credential_id, d.priority) for d in deployments] == [
        ("m1", None, None), ("gpt-4o-mini", acme.credential.pk, 1)]
    assert deployments[0].litellm_params == {"mock_response": "hi from code"}
    assert deployments[1].litellm_params == {"temperature": 0.2}
    assert route.num_retries == 2 and route.timeout_seconds == 60 and float(route.input_cost_per_million or 0) == 1.5
    assert [f.fallback.name for f in route.fallback_links.all()] == ["chat"]
    assert [t.pk for t in route.allowed_teams.all()] == [acme.team.pk]
    edit = admin.get(url(acme, f"{route.pk}/")).content.decode()
    assert 'value="gpt-4o-mini"' in edit and "{&quot;temperature&quot;: 0.2}" in edit and "Test this route" in edit
    assert AuditLogEntry.objects.filter(action="route.create", target_id=str(route.pk)).exists()


def test_edit_keeps_what_the_form_shows(acme: Tenant) -> None:
    admin = login(acme, "admin")
    response = admin.post(url(acme, f"{acme.route.pk}/"), route_post(name="chat", **{
        "dep-0-mock_response": "changed", "fallbacks": [""], "is_active": ""}))
    assert response.status_code == 302
    acme.route.refresh_from_db()
    assert not acme.route.is_active and acme.route.deployments.get().litellm_params == {"mock_response": "changed"}


@pytest.mark.parametrize("fields, where, message", [
    ({"name": "bad name!"}, 'id="name-error"', "Use up to 100 letters"),
    ({"num_retries": "11"}, 'id="num_retries-error"', "less than or equal to 10"),
    ({"dep-0-model": "", "dep-0-mock_response": ""}, "deployments", "at least one deployment"),
    ({"dep-0-params": "{not json"}, 'id="dep-0-errors"', "not valid JSON"),
    ({"dep-0-params": '{"api_key": "x"}'}, 'id="dep-0-errors"', "Not an allowed parameter"),
    ({"dep-0-mock_response": ""}, 'id="dep-0-errors"', "Needs a credential"),
    ({"dep-0-credential": "999999"}, 'id="dep-0-errors"', "does not exist"),
    ({"dep-0-weight": "0"}, 'id="dep-0-errors"', "greater than or equal to 1"),
    ({"fallbacks": ["no-such"]}, "Fallback", "does not exist"),
    ({"allowed_teams": ["abc"]}, "Teams that may use it", "Incorrect type"),
    ({"name": "chat"}, 'id="name-error"', "already exists"),
    ({"deployment_rows": "9" * 40}, "deployments", "at least one deployment"),
])
def test_bad_input_is_a_400_with_the_error_where_it_belongs(acme: Tenant, fields: dict[str, Any], where: str,
                                                            message: str) -> None:
    page = login(acme, "admin").post(url(acme, "new/"), route_post(**fields))
    html = page.content.decode()
    assert page.status_code == 400, html[:2000]
    assert message in html and where in html, html[html.find("field-error") - 300:][:900]
    assert html.index(message) > html.index(where) or where == "deployments"
    assert not ModelRoute.objects.filter(organization=acme.org, name="code").exists()


def test_delete_is_refused_while_a_key_names_the_route(acme: Tenant) -> None:
    admin = login(acme, "admin")
    acme.key.allowed_routes.set([acme.route])
    refused = admin.post(url(acme, f"{acme.route.pk}/delete/"), follow=True).content.decode()
    assert "remove it from them first" in refused and ModelRoute.objects.filter(pk=acme.route.pk).exists()
    acme.key.allowed_routes.set([])
    assert "deleted" in admin.post(url(acme, f"{acme.route.pk}/delete/"), follow=True).content.decode()
    assert not ModelRoute.objects.filter(pk=acme.route.pk).exists()


@pytest.mark.parametrize("role", ["team_admin", "member", "viewer"])
def test_below_admin_routes_are_read_only(acme: Tenant, role: str) -> None:
    client = login(acme, role)
    listing = client.get(url(acme)).content.decode()
    assert "<code>chat</code>" in listing and "New route" not in listing and url(acme, f"{acme.route.pk}/") not in listing
    assert client.get(url(acme, f"{acme.route.pk}/")).status_code == 403
    assert client.post(url(acme, "new/"), route_post()).status_code == 403
    assert client.post(url(acme, f"{acme.route.pk}/"), route_post(name="chat")).status_code == 403
    assert client.post(url(acme, f"{acme.route.pk}/test/"), {"project": acme.project.pk}).status_code == 403
    assert client.post(url(acme, f"{acme.route.pk}/delete/")).status_code == 403
    assert ModelRoute.objects.filter(pk=acme.route.pk, is_active=True).exists()
    assert not ModelRoute.objects.filter(name="code").exists()


def test_another_organizations_routes_answer_404(acme: Tenant, globex: Tenant) -> None:
    owner = login(globex, "owner")
    assert owner.get(url(acme)).status_code == 404
    for path in (f"{acme.route.pk}/", f"{acme.route.pk}/test/", f"{acme.route.pk}/delete/"):
        assert owner.post(url(globex, path), route_post(name="chat", project=globex.project.pk)).status_code == 404
    assert owner.get(url(globex, f"{acme.route.pk}/")).status_code == 404
    assert ModelRoute.objects.filter(pk=acme.route.pk, is_active=True).exists()
    # globex's own route cannot fall back to acme's, nor deploy on acme's credential
    bad = owner.post(url(globex, "new/"), route_post(**{"dep-0-credential": str(acme.credential.pk),
                                                       "fallbacks": ["chat"]}))
    assert bad.status_code == 400 and "does not exist" in bad.content.decode()


class FakeClient:
    calls: list[dict[str, Any]] = []
    fail: GatewayCallError | None = None

    def __init__(self, api_key: str, **kwargs: Any) -> None:
        self.key, self.kwargs = api_key, kwargs

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Completion:
        key = VirtualKey.objects.get(key_hash=sha256_hex(self.key), status=KeyStatus.ACTIVE)  # live at call time
        FakeClient.calls.append({"model": model, "messages": messages, "client": self.kwargs, "key": key, **params})
        if FakeClient.fail is not None:
            raise FakeClient.fail
        return Completion(content="hello from the fake", tool_arguments=None, cost=0.000123, latency_ms=42.0,
                          trace_id="t", prompt_tokens=7, completion_tokens=3)


def test_a_route_test_is_one_bounded_call_with_a_short_lived_key(acme: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(route_test, "GatewayClient", FakeClient)
    FakeClient.calls, FakeClient.fail = [], None
    admin = login(acme, "admin")
    page = admin.post(url(acme, f"{acme.route.pk}/test/"), {"project": acme.project.pk, "prompt": "Ping?"})
    html = page.content.decode()
    assert page.status_code == 200 and "hello from the fake" in html and "42 ms" in html and "$0.000123" in html
    call = FakeClient.calls[0]
    assert call["model"] == "chat" and call["messages"] == [{"role": "user", "content": "Ping?"}]
    assert call["max_tokens"] == route_test.TEST_MAX_TOKENS
    assert call["client"] == {"timeout": route_test.TEST_TIMEOUT_SECONDS, "max_retries": 0}
    key = VirtualKey.objects.get(pk=call["key"].pk)
    assert key.status == KeyStatus.REVOKED and [r.name for r in key.allowed_routes.all()] == ["chat"]
    assert key.owner == acme.users["admin"] and key.max_budget == route_test.TEST_MAX_BUDGET
    assert key.expires_at is not None and key.project == acme.project
    actions = set(AuditLogEntry.objects.filter(target_id=str(key.pk), action__startswith="key.").values_list("action", flat=True))
    assert actions == {"key.create", "key.revoke"}

    FakeClient.fail = GatewayCallError("Budget exceeded for project", status=429, permanent=True, budget=True)
    failed = admin.post(url(acme, f"{acme.route.pk}/test/"), {"project": acme.project.pk}).content.decode()
    assert "The call failed: 429: Budget exceeded for project" in failed
    assert VirtualKey.objects.filter(name="route test: chat", status=KeyStatus.ACTIVE).count() == 0

    for bad in ({"project": "abc"}, {"project": "999999"}, {"project": acme.project.pk, "prompt": "x" * 3000}):
        refused = admin.post(url(acme, f"{acme.route.pk}/test/"), bad).content.decode()
        assert "The call failed" in refused, bad
    assert len(FakeClient.calls) == 2
