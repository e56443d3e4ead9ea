"""The web UI: same tenancy and roles as the API."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.test import Client

from gateway import usage
from gateway.models import VirtualKey
from tests.factories import Tenant
from tests.factories import web_client as login


@pytest.mark.django_db
def test_overview_shows_spend_and_request_charts(acme: Tenant) -> None:
    usage.store([{"request_id": uuid.uuid4().hex, "ts": time.time(), "key_id": acme.key.pk, "key_hash": "x",
                  "org": acme.org.pk, "team": acme.team.pk, "project": acme.project.pk, "owner": None,
                  "route": "chat", "group": "acme/chat", "prompt_tokens": 1, "completion_tokens": 2,
                  "cost_nano": 1_250_000_000, "latency_ms": 40, "status": "success"}])
    page = login(acme, "viewer").get(f"/orgs/{acme.org.slug}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "$1.25" in html and html.count("<figure") == 2 and "<td>$1.25</td>" in html


@pytest.mark.django_db
def test_outsiders_get_404_and_anonymous_users_go_to_login(acme: Tenant, globex: Tenant) -> None:
    assert login(globex, "owner").get(f"/orgs/{acme.org.slug}/keys/").status_code == 404
    assert Client().get(f"/orgs/{acme.org.slug}/").status_code == 302


@pytest.mark.django_db
def test_issuing_a_key_shows_it_once_with_the_cline_setup(acme: Tenant) -> None:
    client = login(acme, "member")
    page = client.post(f"/orgs/{acme.org.slug}/keys/", {"name": "laptop", "team": acme.team.pk,
                                                        "project": acme.project.pk, "allowed_routes": ["chat"],
                                                        "budget_period": "none", "max_budget": "5"})
    html = page.content.decode()
    assert page.status_code == 200
    key = VirtualKey.objects.get(name="laptop")
    assert key.owner == acme.users["member"] and key.key_prefix in html
    assert "providers.json" in html and "LiteLLM" in html and "curl" in html
    listing = client.get(f"/orgs/{acme.org.slug}/keys/").content.decode()
    assert "laptop" in listing and key.key_prefix in listing
    assert key.key_hash not in listing


@pytest.mark.django_db
def test_bad_form_input_is_shown_next_to_the_field(acme: Tenant) -> None:
    page = login(acme, "owner").post(f"/orgs/{acme.org.slug}/keys/", {
        "name": "x", "team": acme.team.pk, "project": acme.project.pk, "max_budget": "-4", "budget_period": "none"})
    assert page.status_code == 400
    assert "Ensure this value is greater than or equal to 0" in page.content.decode()
    assert not VirtualKey.objects.filter(name="x").exists()


@pytest.mark.django_db
def test_key_actions_follow_roles(acme: Tenant) -> None:
    member = login(acme, "member")
    url = f"/orgs/{acme.org.slug}/keys/{acme.key.pk}"
    member.post(f"{url}/block/")
    acme.key.refresh_from_db()
    assert acme.key.status == "active"  # members cannot block
    member.post(f"{url}/revoke/")
    acme.key.refresh_from_db()
    assert acme.key.status == "revoked"  # but can revoke their own key


@pytest.mark.django_db
def test_viewers_cannot_issue_and_only_admins_read_the_audit_log(acme: Tenant) -> None:
    viewer = login(acme, "viewer")
    assert 'id="issue-key"' not in viewer.get(f"/orgs/{acme.org.slug}/keys/").content.decode()
    response: Any = viewer.post(f"/orgs/{acme.org.slug}/keys/", {"name": "v", "team": acme.team.pk,
                                                                "project": acme.project.pk})
    assert response.status_code == 403
    assert viewer.get(f"/orgs/{acme.org.slug}/audit/").status_code == 403
    assert login(acme, "admin").get(f"/orgs/{acme.org.slug}/audit/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_no_page_shows_another_tenants_names(acme: Tenant, globex: Tenant, role: str) -> None:
    """Every page of acme, for its owner and its viewer, with both tenants' objects interleaved:
    none of globex's names (each carries its slug) is on it."""
    from gateway.services import keys
    from portal.access import actor_for_user

    for t in (globex, acme, globex):
        keys.key_create(actor=actor_for_user(t.org, t.users["owner"]),
                        data={"name": f"{t.org.slug} page key", "team": t.team, "project": t.project})
    client = login(acme, role)
    pages = ["", "keys/", "routes/", "audit/", f"projects/{acme.project.pk}/", f"keys/{acme.key.pk}/", "credentials/",
             f"credentials/{acme.credential.pk}/", f"routes/{acme.route.pk}/", "routes/new/", "credentials/new/openai/"]
    for page in pages:
        response = client.get(f"/orgs/{acme.org.slug}/{page}")
        assert response.status_code in (200, 403), page
        html = response.content.decode().lower()
        assert "acme" in html or response.status_code == 403, page  # the page shows acme's own names
        leaked = [m for m in globex.foreign_markers() if m.lower() in html]
        assert leaked == [], (page, leaked)
    assert client.get("/").status_code in (200, 302)
