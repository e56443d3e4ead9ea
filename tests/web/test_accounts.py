"""Invitations (portal/accounts.py) and the accept page: the link works once, expires, is
stored hashed, never leaks across organizations; viewers cannot invite."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import timezone

from portal import accounts
from portal.access import actor_for_user
from portal.models import AuditLogEntry, Invitation, Membership, OrgRole, TeamMembership, TeamRole
from portal.tokens import sha256_hex
from tests.factories import Tenant

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-long-new-passphrase-42"


def _invite(t: Tenant, email: str = "new.person@acme.test", role: str = OrgRole.MEMBER, **kwargs: Any) -> Invitation:
    return accounts.invitation_create(actor=actor_for_user(t.org, t.users["admin"]), email=email, role=role, **kwargs)


def _link(message: Any) -> str:
    match = re.search(r"https?://\S+/invitations/(inv_\S+)/", message.body)
    assert match, message.body
    return match.group(1)


def test_invitation_creates_the_membership_mails_a_link_and_stores_only_its_hash(
        acme: Tenant, django_capture_on_commit_callbacks: Any, settings: Any) -> None:
    settings.PORTAL_PUBLIC_URL = "https://portal.acme.test"
    with django_capture_on_commit_callbacks(execute=True):
        inv = _invite(acme, team=acme.team, team_role=TeamRole.ADMIN)
    assert Membership.objects.get(organization=acme.org, user=inv.user).role == OrgRole.MEMBER
    assert TeamMembership.objects.get(team=acme.team, user=inv.user).role == TeamRole.ADMIN
    assert not inv.user.has_usable_password()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.person@acme.test"]
    assert "https://portal.acme.test/invitations/inv_" in mail.outbox[0].body
    token = _link(mail.outbox[0])
    inv.refresh_from_db()
    assert inv.token_hash == sha256_hex(token) and token not in str(Invitation.objects.filter(pk=inv.pk).values())
    assert inv.sent_at is not None and inv.status == "pending"
    assert AuditLogEntry.objects.filter(organization=acme.org, action="invitation.create").exists()


def test_nothing_is_mailed_when_the_transaction_rolls_back(acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError):
        _invite(acme, email="member@acme.test")  # already a member: refused by member_add
    assert mail.outbox == []


@pytest.mark.parametrize("email", ["", "not-an-email", "a@b@c", "x" * 300 + "@acme.test"])
def test_a_bad_email_is_a_field_error(acme: Tenant, email: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _invite(acme, email=email)
    assert "email" in exc.value.error_dict


def test_bad_roles_and_foreign_teams_are_refused(acme: Tenant, globex: Tenant) -> None:
    with pytest.raises(ValidationError) as exc:
        _invite(acme, role="superuser")
    assert "role" in exc.value.error_dict
    with pytest.raises(ValidationError) as exc:
        _invite(acme, team=globex.team)
    assert "team" in exc.value.error_dict
    with pytest.raises(ValidationError):
        _invite(acme, team_role=TeamRole.ADMIN)
    assert not Membership.objects.filter(user__email="new.person@acme.test").exists()


def test_who_may_invite(acme: Tenant) -> None:
    for role in ("member", "viewer", "team_admin"):
        with pytest.raises(PermissionDenied):
            accounts.invitation_create(actor=actor_for_user(acme.org, acme.users[role]), email="x@acme.test",
                                       role=OrgRole.VIEWER)
    with pytest.raises(PermissionDenied):  # an admin cannot hand out the owner role
        _invite(acme, role=OrgRole.OWNER)
    assert accounts.invitation_create(actor=actor_for_user(acme.org, acme.users["owner"]), email="o2@acme.test",
                                      role=OrgRole.OWNER).role == OrgRole.OWNER


def test_the_link_works_once(acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        inv = _invite(acme)
    token = _link(mail.outbox[0])
    accounts.invitation_accept(plaintext=token, password=NEW_PASSWORD)
    inv.user.refresh_from_db()
    assert inv.user.check_password(NEW_PASSWORD)
    with pytest.raises(PermissionDenied):
        accounts.invitation_accept(plaintext=token, password="another-long-passphrase-43")
    inv.user.refresh_from_db()
    assert inv.user.check_password(NEW_PASSWORD)


def test_an_expired_revoked_or_resent_link_does_not_work(acme: Tenant,
                                                         django_capture_on_commit_callbacks: Any) -> None:
    admin = actor_for_user(acme.org, acme.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        inv = _invite(acme)
    first = _link(mail.outbox[0])
    with django_capture_on_commit_callbacks(execute=True):
        accounts.invitation_resend(actor=admin, invitation=inv)
    second = _link(mail.outbox[1])
    assert accounts.invitation_by_token(first) is None and accounts.invitation_by_token(second) is not None
    Invitation.objects.filter(pk=inv.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert accounts.invitation_by_token(second) is None
    Invitation.objects.filter(pk=inv.pk).update(expires_at=timezone.now() + dt.timedelta(hours=1))
    accounts.invitation_revoke(actor=admin, invitation=inv)
    assert accounts.invitation_by_token(second) is None
    assert not Membership.objects.filter(organization=acme.org, user=inv.user).exists()
    with pytest.raises(PermissionDenied):
        accounts.invitation_accept(plaintext=second, password=NEW_PASSWORD)


def test_a_weak_password_is_refused_with_the_validators_message(acme: Tenant,
                                                                 django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        _invite(acme)
    token = _link(mail.outbox[0])
    for weak in ("", "short", "password123"):
        with pytest.raises(ValidationError) as exc:
            accounts.invitation_accept(plaintext=token, password=weak)
        assert "password1" in exc.value.error_dict
    assert accounts.invitation_by_token(token) is not None  # still usable


def test_another_organizations_admin_cannot_resend_or_revoke(acme: Tenant, globex: Tenant) -> None:
    inv = _invite(acme)
    globex_admin = actor_for_user(globex.org, globex.users["admin"])
    for change in (accounts.invitation_resend, accounts.invitation_revoke):
        with pytest.raises(Invitation.DoesNotExist):
            change(actor=globex_admin, invitation=inv)
    assert Invitation.objects.visible_to(globex_admin, "view").filter(pk=inv.pk).count() == 0


@pytest.mark.parametrize("token", ["", "inv_", "inv_nope", "x" * 500, "inv_" + "a" * 200, "../../etc/passwd"])
def test_hostile_tokens_find_nothing(acme: Tenant, token: str) -> None:
    _invite(acme)
    assert accounts.invitation_by_token(token) is None


# The accept page -------------------------------------------------------------

def test_accept_page_sets_the_password_and_signs_in(acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        inv = _invite(acme)
    token = _link(mail.outbox[0])
    client = Client()
    first = client.get(f"/invitations/{token}/")
    assert first.status_code == 302 and first["Location"] == "/invitations/accept/"
    page = client.get("/invitations/accept/")
    assert page.status_code == 200 and b"Join Acme Corporation" in page.content and token.encode() not in page.content
    differ = client.post("/invitations/accept/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"})
    assert differ.status_code == 400 and b"The two passwords differ" in differ.content
    weak = client.post("/invitations/accept/", {"password1": "password", "password2": "password"})
    assert weak.status_code == 400 and b"too common" in weak.content
    done = client.post("/invitations/accept/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == f"/orgs/{acme.org.slug}/"
    assert client.get(f"/orgs/{acme.org.slug}/").status_code == 200
    inv.refresh_from_db()
    assert inv.status == "accepted"
    again = Client()
    again.get(f"/invitations/{token}/")
    assert again.get("/invitations/accept/").status_code == 404
    assert again.post("/invitations/accept/", {"password1": "x-" + NEW_PASSWORD,
                                               "password2": "x-" + NEW_PASSWORD}).status_code == 404


def test_accept_page_for_someone_who_has_a_password_changes_nothing(acme: Tenant, globex: Tenant,
                                                                    django_capture_on_commit_callbacks: Any) -> None:
    existing = globex.users["member"]
    existing.set_password("their-own-password-77")
    existing.save()
    with django_capture_on_commit_callbacks(execute=True):
        _invite(acme, email=existing.email)
    assert "You have an account already" in mail.outbox[0].body
    client = Client()
    client.get(f"/invitations/{_link(mail.outbox[0])}/")
    response = client.post("/invitations/accept/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/login/"
    existing.refresh_from_db()
    assert existing.check_password("their-own-password-77")


def test_accept_page_without_a_token_is_not_found(db: Any) -> None:
    assert Client().get("/invitations/accept/").status_code == 404
    assert Client().post("/invitations/accept/", {}).status_code == 404


# Members added through the API ---------------------------------------------------

def test_a_member_added_through_the_api_is_mailed_an_invitation(acme: Tenant,
                                                                 django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = acme.client("admin").post(acme.url("members/"), {"email": "api.new@acme.test", "role": "viewer"},
                                             format="json")
    assert response.status_code == 201, response.content
    assert response.json()["email"] == "api.new@acme.test" and response.json()["role"] == "viewer"
    assert len(mail.outbox) == 1 and "/invitations/inv_" in mail.outbox[0].body
    assert Invitation.objects.get(organization=acme.org, email="api.new@acme.test").status == "pending"
    viewer = acme.client("viewer").post(acme.url("members/"), {"email": "v.new@acme.test", "role": "viewer"},
                                        format="json")
    assert viewer.status_code == 403 and not Invitation.objects.filter(email="v.new@acme.test").exists()


# Password reset --------------------------------------------------------------------

def _reset_link(message: Any) -> str:
    match = re.search(r"(https?://[^/\s]+)(/password/reset/[^/\s]+/[^/\s]+/)", message.body)
    assert match, message.body
    return match.group(0)


def test_password_reset_mails_a_link_from_the_configured_url_not_the_host_header(acme: Tenant, settings: Any) -> None:
    settings.PORTAL_PUBLIC_URL = "https://portal.acme.test"
    settings.ALLOWED_HOSTS = ["*"]
    user = acme.users["member"]
    user.set_password("old-password-for-tests-1")
    user.save()
    client = Client()
    response = client.post("/password/reset/", {"email": "MEMBER@acme.test"}, HTTP_HOST="evil.example")
    assert response.status_code == 302 and response["Location"] == "/password/reset/sent/"
    assert len(mail.outbox) == 1
    link = _reset_link(mail.outbox[0])
    assert link.startswith("https://portal.acme.test/password/reset/") and "evil" not in mail.outbox[0].body
    path = link.removeprefix("https://portal.acme.test")
    form = client.get(path, follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    set_url = form.redirect_chain[-1][0]
    weak = client.post(set_url, {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200 and b"too short" in weak.content
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/password/reset/done/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    reused = Client().get(path, follow=True)
    assert b"This link does not work" in reused.content


def test_password_reset_tells_nothing_about_unknown_addresses(db: Any) -> None:
    response = Client().post("/password/reset/", {"email": "nobody@nowhere.test"})
    assert response.status_code == 302 and mail.outbox == []
    bad = Client().post("/password/reset/", {"email": "not an address"})
    assert bad.status_code == 200 and b"Enter a valid email address" in bad.content


def test_sign_in_page_offers_sso_only_when_configured(db: Any, settings: Any) -> None:
    assert b"Sign in with SSO" not in Client().get("/login/").content
    assert Client().get("/sso/start/").status_code == 404
    assert Client().get("/sso/callback/?code=x&state=y").status_code == 404
    settings.OIDC_ENABLED = True
    assert b"Sign in with SSO" in Client().get("/login/").content


def test_an_organization_name_with_line_breaks_cannot_inject_mail_headers(
        acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    type(acme.org).objects.filter(pk=acme.org.pk).update(name="Acme\nBcc: victim@example.com")
    acme.org.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        inv = _invite(acme)
    assert len(mail.outbox) == 1 and "\n" not in mail.outbox[0].subject
    assert mail.outbox[0].bcc == [] and mail.outbox[0].to == [inv.email]


def test_a_mail_server_failure_leaves_the_invitation_unsent_not_an_error(
        acme: Tenant, django_capture_on_commit_callbacks: Any, monkeypatch: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError

    monkeypatch.setattr(accounts, "send_mail", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        inv = _invite(acme)
    inv.refresh_from_db()
    assert inv.sent_at is None and inv.status == "pending"
