"""The API tokens page and the organization switcher, through Django's test client."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from portal.models import ApiToken, Membership, OrgRole
from portal.tokens import sha256_hex
from tests.factories import Tenant

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _url(t: Tenant, path: str = "") -> str:
    return f"/orgs/{t.org.slug}/tokens/{path}"


def test_members_see_their_own_tokens_and_admins_everyones(acme: Tenant) -> None:
    mine = _client(acme.users["member"]).get(_url(acme)).content.decode()
    assert "acme member token" in mine and "acme admin token" not in mine and "Revoke" in mine
    everyone = _client(acme.users["admin"]).get(_url(acme)).content.decode()
    assert "acme member token" in everyone and "acme viewer token" in everyone and "member@acme.test" in everyone


def test_create_shows_the_token_once_and_stores_its_hash(acme: Tenant) -> None:
    client = _client(acme.users["member"])
    response = client.post(_url(acme), {"name": "ci", "role": "viewer", "scope": "keys"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.content.decode()
    plaintext = body.split('id="token-plaintext">')[1].split("<")[0]
    assert plaintext.startswith("lpt_") and 'data-copy="#token-plaintext"' in body
    token = ApiToken.objects.get(token_hash=sha256_hex(plaintext))
    assert (token.user, token.role, token.scope) == (acme.users["member"], "viewer", "keys")
    assert plaintext not in client.get(_url(acme)).content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert api.get(f"/api/v1/orgs/{acme.org.slug}/keys/").status_code == 200


@pytest.mark.parametrize(("data", "field"), [
    ({"name": "x", "role": "owner"}, "role"),             # above the member's own role
    ({"name": "x", "role": "superuser"}, "role"),
    ({"name": "x", "role": "member", "scope": "root"}, "scope"),
    ({"name": "", "role": "member"}, "name"),
    ({"name": "x" * 101, "role": "member"}, "name"),
    ({"name": "x", "role": "member", "expires_at": "2001-01-01T00:00"}, "expires_at"),
    ({"name": "x", "role": "member", "expires_at": "not a date"}, "expires_at"),
])
def test_bad_input_is_a_400_with_the_error_next_to_its_field(acme: Tenant, data: dict[str, str], field: str) -> None:
    before = ApiToken.objects.count()
    response = _client(acme.users["member"]).post(_url(acme), data)
    assert response.status_code == 400
    assert f'id="{field.replace("_at", "")}-errors"' in response.content.decode()
    assert ApiToken.objects.count() == before


def test_the_role_choices_stop_at_the_actors_role(acme: Tenant) -> None:
    body = _client(acme.users["viewer"]).get(_url(acme)).content.decode()
    assert 'value="viewer"' in body and 'value="member"' not in body and 'value="owner"' not in body


def test_revoke_own_and_as_admin_but_not_someone_elses(acme: Tenant) -> None:
    member_token = ApiToken.objects.get(organization=acme.org, user=acme.users["member"])
    admin_token = ApiToken.objects.get(organization=acme.org, user=acme.users["admin"])
    viewer = _client(acme.users["viewer"])
    assert viewer.post(_url(acme, f"{member_token.pk}/revoke/")).status_code == 404
    assert _client(acme.users["member"]).post(_url(acme, f"{admin_token.pk}/revoke/")).status_code == 404
    admin_token.refresh_from_db()
    member_token.refresh_from_db()
    assert admin_token.revoked_at is None and member_token.revoked_at is None
    response = _client(acme.users["admin"]).post(_url(acme, f"{member_token.pk}/revoke/"), follow=True)
    assert b"is revoked" in response.content
    member_token.refresh_from_db()
    assert member_token.revoked_at is not None
    assert _client(acme.users["member"]).get(_url(acme, f"{member_token.pk}/revoke/")).status_code == 405


def test_another_organizations_tokens_answer_404(acme: Tenant, globex: Tenant) -> None:
    acme_admin = _client(acme.users["admin"])
    globex_token = ApiToken.objects.filter(organization=globex.org).first()
    assert globex_token is not None
    assert acme_admin.get(_url(globex)).status_code == 404
    assert acme_admin.post(_url(globex), {"name": "x", "role": "viewer"}).status_code == 404
    assert acme_admin.post(_url(acme, f"{globex_token.pk}/revoke/")).status_code == 404
    globex_token.refresh_from_db()
    assert globex_token.revoked_at is None
    assert not any(marker in acme_admin.get(_url(acme)).content.decode() for marker in globex.foreign_markers())


def test_anonymous_is_sent_to_sign_in(acme: Tenant) -> None:
    response = Client().get(_url(acme))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# The organization switcher ---------------------------------------------------------

def test_the_switcher_goes_to_the_same_section_of_a_member_organization(acme: Tenant, globex: Tenant) -> None:
    user = acme.users["member"]
    Membership.objects.create(organization=globex.org, user=user, role=OrgRole.VIEWER)
    client = _client(user)
    page = client.get(_url(acme)).content.decode()
    assert 'id="org-switch"' in page and 'value="globex"' in page and 'name="section" value="tokens"' in page
    response = client.get("/switch/", {"org": "globex", "section": "tokens"})
    assert response.status_code == 302 and response["Location"] == "/orgs/globex/tokens/"
    for section in ("", "evil", "//evil.example", "key"):  # "key" needs a key id: the overview instead
        response = client.get("/switch/", {"org": "globex", "section": section})
        assert response["Location"] == "/orgs/globex/", section


def test_the_switcher_refuses_organizations_one_is_not_in(acme: Tenant, globex: Tenant) -> None:
    client = _client(acme.users["member"])
    assert 'id="org-switch"' not in client.get(_url(acme)).content.decode()  # one organization: no switcher
    for org in ("globex", "nope", "", "../admin"):
        assert client.get("/switch/", {"org": org}).status_code == 404
    assert Client().get("/switch/", {"org": "acme"}).status_code == 302  # to sign in
