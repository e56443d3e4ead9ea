"""The keys pages (portal/web/gateway/views.py): issue with a project (its team comes with it), limits and
routes; the key once with its Cline setup and the providers.json download; a key's own page with its usage;
rotate with a chosen grace period, block, unblock, revoke; roles and tenants as in the API."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from django.test import Client

from gateway import usage
from gateway.models import KeyGraceHash, VirtualKey
from gateway.services import keys
from portal import services
from portal.access import actor_for_user, system_actor
from portal.models import AuditLogEntry
from tests.factories import Tenant
from tests.web.test_pages import login

pytestmark = pytest.mark.django_db


def keys_url(t: Tenant, path: str = "") -> str:
    return f"/orgs/{t.org.slug}/keys/{path}"


def issue(client: Client, t: Tenant, **fields: Any) -> Any:
    return client.post(keys_url(t), {"name": "laptop", "project": t.project.pk, "budget_period": "none"} | fields)


def test_the_form_asks_for_a_project_and_the_key_takes_its_team(acme: Tenant) -> None:
    client = login(acme, "team_admin")
    form = client.get(keys_url(acme)).content.decode()
    assert 'name="project"' in form and 'name="team"' not in form
    assert f'<optgroup label="{acme.team.name}">' in form and 'type="datetime-local"' in form
    page = issue(client, acme, allowed_routes=["chat"], max_budget="5", soft_budget="4", rpm_limit="60",
                 tpm_limit="10000", expires_at="2999-01-01T00:00", budget_period="monthly")
    assert page.status_code == 200, page.content.decode()[:2000]
    key = VirtualKey.objects.get(name="laptop")
    assert (key.team, key.project, key.rpm_limit, key.tpm_limit, key.budget_period) == (
        acme.team, acme.project, 60, 10000, "monthly")
    assert float(key.max_budget or 0) == 5.0
    assert [r.name for r in key.allowed_routes.all()] == ["chat"] and key.expires_at is not None and key.expires_at.year == 2999
    assert page["Cache-Control"] == "no-store"


def test_the_issued_page_has_copy_buttons_the_cline_setup_and_the_auth_command(acme: Tenant) -> None:
    html = issue(login(acme, "member"), acme, allowed_routes=["chat"]).content.decode()
    key = VirtualKey.objects.get(name="laptop")
    assert 'data-copy="#plaintext"' in html and "portal/copy.js" in html
    assert "API Provider" in html and "LiteLLM" in html
    assert "cline auth --provider openai --apikey sk-" in html and "--modelid chat --baseurl http" in html
    assert f'action="/orgs/acme/keys/{key.pk}/providers.json"' in html


@pytest.mark.parametrize("field, value, message", [
    ("max_budget", "-4", "greater than or equal to 0"),
    ("rpm_limit", "many", "A valid integer is required"),
    ("expires_at", "2001-01-01T00:00", "The expiry must be in the future"),
    ("soft_budget", "9", "soft budget cannot be above"),
    ("project", "99999999999999999999", "Invalid pk"),
    ("project", "\x00<script>", "Incorrect type"),
    ("allowed_routes", "no-such-route", "does not exist"),
])
def test_bad_input_is_a_400_with_the_error_next_to_its_field(acme: Tenant, field: str, value: str,
                                                             message: str) -> None:
    page = issue(login(acme, "owner"), acme, **{field: value, "max_budget": "5" if field == "soft_budget" else
                                               {"max_budget": value}.get(field, "")})
    html = page.content.decode()
    assert page.status_code == 400
    assert f'id="{field}-error"' in html and message in html, html[html.find("field-error") - 200:][:600]
    assert not VirtualKey.objects.filter(name="laptop").exists()


def test_a_project_of_a_team_one_is_not_in_is_refused(acme: Tenant) -> None:
    system = system_actor(acme.org, "tests")
    other_team = services.team_create(actor=system, data={"name": "acme-other"})
    other = services.project_create(actor=system, data={"name": "acme-elsewhere", "team": other_team})
    client = login(acme, "member")
    assert "acme-elsewhere" not in client.get(keys_url(acme)).content.decode()
    page = issue(client, acme, project=other.pk)
    assert page.status_code in (400, 403) and not VirtualKey.objects.filter(name="laptop").exists()


def test_viewers_see_no_form_and_their_post_is_refused(acme: Tenant) -> None:
    viewer = login(acme, "viewer")
    assert 'id="issue-key"' not in viewer.get(keys_url(acme)).content.decode()
    assert issue(viewer, acme).status_code == 403
    assert viewer.post(keys_url(acme) + f"{acme.key.pk}/revoke/").status_code == 403
    key_page = viewer.get(keys_url(acme) + f"{acme.key.pk}/").content.decode()
    assert "Revoke" not in key_page and "Rotate" not in key_page
    acme.key.refresh_from_db()
    assert acme.key.status == "active"


def admin_key(t: Tenant) -> VirtualKey:
    """A key of the member's team, owned by the team admin: the member sees it, may not change it."""
    return keys.key_create(actor=actor_for_user(t.org, t.users["team_admin"]),
                           data={"name": "acme admin key", "team": t.team, "project": t.project,
                                 "owner": t.users["team_admin"]}).key


def test_a_member_sees_its_teams_keys_and_may_rotate_only_its_own(acme: Tenant) -> None:
    theirs = admin_key(acme)
    member = login(acme, "member")
    assert "acme admin key" in member.get(keys_url(acme)).content.decode()
    page = member.get(keys_url(acme) + f"{theirs.pk}/").content.decode()
    assert "Rotate" not in page and "Revoke" not in page and "Block" not in page
    refused = member.post(keys_url(acme) + f"{theirs.pk}/rotate/", {"grace_period_seconds": "0"})
    assert refused.status_code == 403
    theirs.refresh_from_db()
    assert theirs.rotated_at is None
    own = member.get(keys_url(acme) + f"{acme.key.pk}/").content.decode()
    assert "Rotate" in own and "Revoke" in own and "Block" not in own  # members never block


def test_rotation_takes_the_chosen_grace_period(acme: Tenant) -> None:
    member = login(acme, "member")
    page = member.post(keys_url(acme) + f"{acme.key.pk}/rotate/", {"grace_period_seconds": "86400"})
    html = page.content.decode()
    assert page.status_code == 200 and "keeps working for 86400 seconds" in html
    grace = KeyGraceHash.objects.get(key=acme.key)
    assert 86000 < (grace.expires_at - time_now()).total_seconds() <= 86400
    for hostile in ("-1", "nan", "9" * 30, "1e9"):
        refused = member.post(keys_url(acme) + f"{acme.key.pk}/rotate/", {"grace_period_seconds": hostile},
                              follow=True)
        assert refused.status_code == 200 and 'class="error"' in refused.content.decode(), hostile
    assert KeyGraceHash.objects.filter(key=acme.key).count() == 1


def time_now() -> Any:
    from django.utils import timezone

    return timezone.now()


def test_block_unblock_and_revoke_from_the_key_page(acme: Tenant) -> None:
    admin = login(acme, "admin")
    url = keys_url(acme) + f"{acme.key.pk}/"
    assert "Block" in admin.get(url).content.decode()
    assert "block done" in admin.post(url + "block/", follow=True).content.decode()
    acme.key.refresh_from_db()
    assert acme.key.status == "blocked"
    admin.post(url + "unblock/")
    admin.post(url + "revoke/")
    acme.key.refresh_from_db()
    assert acme.key.status == "revoked"
    again = admin.post(url + "unblock/", follow=True).content.decode()
    assert "revocation is final" in again
    assert admin.post(url + "explode/").status_code == 404
    actions = list(AuditLogEntry.objects.filter(target_id=str(acme.key.pk)).values_list("action", flat=True))
    assert {"key.block", "key.unblock", "key.revoke"} <= set(actions)


def test_providers_json_is_a_download_for_the_keys_current_secret_only(acme: Tenant) -> None:
    member = login(acme, "member")
    url = keys_url(acme) + f"{acme.key.pk}/providers.json"
    response = member.post(url, {"key": acme.key_plaintext, "model": "chat"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="providers.json"'
    assert response["Content-Type"] == "application/json" and response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    settings = body["providers"]["litellm"]["settings"]
    assert body["lastUsedProvider"] == "litellm" and body["providers"]["litellm"]["updatedAt"]
    assert settings == {"provider": "litellm", "apiKey": acme.key_plaintext, "model": "chat",
                        "baseUrl": settings["baseUrl"]} and settings["baseUrl"].endswith("/v1")
    for wrong in ("sk-not-this-key", "", "x" * 5000):
        refused = member.post(url, {"key": wrong})
        assert refused.status_code == 400 and b"apiKey" not in refused.content
    assert member.post(url, {"key": acme.key_plaintext, "model": "<other>"}).status_code == 200  # default model
    assert member.get(url).status_code == 405


def test_another_organizations_key_pages_answer_404(acme: Tenant, globex: Tenant) -> None:
    outsider = login(globex, "owner")
    for path in (f"{acme.key.pk}/", f"{acme.key.pk}/rotate/", f"{acme.key.pk}/revoke/"):
        method = outsider.get if path.endswith(f"{acme.key.pk}/") else outsider.post
        assert method(keys_url(acme) + path).status_code == 404, path
    # globex's owner on globex's pages, with acme's key id: 404 too (the key is not theirs)
    assert outsider.get(keys_url(globex) + f"{acme.key.pk}/").status_code == 404
    assert outsider.post(keys_url(globex) + f"{acme.key.pk}/revoke/").status_code == 404
    assert outsider.post(keys_url(globex) + f"{acme.key.pk}/providers.json",
                         {"key": acme.key_plaintext}).status_code == 404
    acme.key.refresh_from_db()
    assert acme.key.status == "active"


def seed(t: Tenant, key: VirtualKey, n: int = 12) -> None:
    now = time.time()
    usage.store([{"request_id": uuid.uuid4().hex, "ts": now - 86400 * (i % 4), "key_id": key.pk, "key_hash": "x",
                  "org": t.org.pk, "team": key.team_id, "project": key.project_id, "owner": None, "route": "chat",
                  "group": f"{t.org.slug}/chat", "prompt_tokens": 10, "completion_tokens": 5,
                  "cost_nano": 250_000_000, "latency_ms": 100 + i, "status": "success" if i else "error"}
                 for i in range(n)])


def test_the_key_page_shows_its_usage_per_day(acme: Tenant) -> None:
    seed(acme, acme.key)
    page = login(acme, "member").get(keys_url(acme) + f"{acme.key.pk}/?days=7")
    html = page.content.decode()
    assert page.status_code == 200
    assert "12 requests (1 error), $3.0000 in the last 7 days" in html
    assert html.count("<tr><td>20") == 4  # four days with requests, newest first
    assert login(acme, "member").get(keys_url(acme) + f"{acme.key.pk}/?days=-1").status_code == 200


def edit(client: Client, t: Tenant, key: VirtualKey, **changes: Any) -> Any:
    """The edit form as the page fills it (GET), with `changes` typed over it."""
    page = client.get(keys_url(t) + f"{key.pk}/").context
    form = dict(page["form"])
    return client.post(keys_url(t) + f"{key.pk}/edit/", {**{k: v for k, v in form.items() if k != "allowed_routes"},
                                                        "allowed_routes": form["allowed_routes"], **changes})


def test_a_member_lowers_the_limits_of_its_own_key_and_may_not_raise_them(acme: Tenant) -> None:
    manager, member = login(acme, "team_admin"), login(acme, "member")
    assert edit(manager, acme, acme.key, max_budget="10", rpm_limit="100", allowed_routes=["chat"]).status_code == 302
    untouched = edit(member, acme, acme.key)
    assert untouched.status_code == 302 and "Nothing changed." in member.get(untouched.url).content.decode()
    lowered = edit(member, acme, acme.key, max_budget="4.5", name="laptop key")
    assert lowered.status_code == 302
    acme.key.refresh_from_db()
    assert (float(acme.key.max_budget or 0), acme.key.name, acme.key.rpm_limit) == (4.5, "laptop key", 100)
    raises: list[dict[str, Any]] = [{"max_budget": ""}, {"rpm_limit": "1000"}, {"allowed_routes": []}]
    for raise_ in raises:
        refused = edit(member, acme, acme.key, **raise_)
        assert refused.status_code == 400 and "Only an admin of the key" in refused.content.decode(), raise_
    acme.key.refresh_from_db()
    assert float(acme.key.max_budget or 0) == 4.5 and acme.key.rpm_limit == 100
    assert edit(manager, acme, acme.key, max_budget="").status_code == 302  # the team's admin lifts it
    acme.key.refresh_from_db()
    assert acme.key.max_budget is None


def test_the_edit_form_refuses_bad_input_viewers_and_other_tenants(acme: Tenant, globex: Tenant) -> None:
    owner = login(acme, "owner")
    for field, value, message in (("rpm_limit", "-1", "greater than or equal to 0"), ("name", "", "may not be blank"),
                                  ("expires_at", "2001-01-01T00:00", "must be in the future"),
                                  ("allowed_routes", ["nope"], "does not exist")):
        page = edit(owner, acme, acme.key, **{field: value})
        assert page.status_code == 400 and message in page.content.decode(), field
    url = keys_url(acme) + f"{acme.key.pk}/edit/"
    assert login(acme, "viewer").post(url, {"name": "viewer's"}).status_code == 403
    assert login(globex, "owner").post(url, {"name": "stolen"}).status_code == 404
    assert login(globex, "owner").post(keys_url(globex) + f"{acme.key.pk}/edit/", {"name": "x"}).status_code == 404
    acme.key.refresh_from_db()
    assert acme.key.name == "acme member key"


def test_the_portals_own_key_is_not_rotated_by_hand(acme: Tenant) -> None:
    from evals import service_keys

    service_keys.service_key(acme.project)
    key = VirtualKey.objects.get(project=acme.project, kind="service")
    admin = login(acme, "admin")
    page = admin.get(keys_url(acme) + f"{key.pk}/").content.decode()
    assert "the portal's own key for evaluations" in page and "Rotate" not in page and "Block" in page
    refused = admin.post(keys_url(acme) + f"{key.pk}/rotate/", {"grace_period_seconds": "0"}, follow=True)
    assert "rotated by the portal" in refused.content.decode()
    key.refresh_from_db()
    assert key.rotated_at is None


def test_the_keys_list_filters_by_status_and_searches_name_or_prefix(acme: Tenant) -> None:
    admin_key(acme)
    client = login(acme, "admin")
    by_name = client.get(keys_url(acme), {"q": "ADMIN"}).content.decode()
    assert "acme admin key" in by_name and "acme member key" not in by_name
    by_prefix = client.get(keys_url(acme), {"q": acme.key.key_prefix}).content.decode()
    assert "acme member key" in by_prefix and "acme admin key" not in by_prefix
    none = client.get(keys_url(acme), {"q": "\x00" + "z" * 500, "status": "revoked"})
    assert none.status_code == 200 and "No key matches." in none.content.decode()
    globex_view = login(acme, "viewer").get(keys_url(acme), {"q": "globex"}).content.decode()
    assert "No key matches." in globex_view
