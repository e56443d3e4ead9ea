"""Journeys through the accounts pages in Chromium: accept an invitation and set a password;
reset a forgotten password; switch organizations; create, copy and revoke an API token."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail

from portal import accounts
from portal.access import actor_for_user
from portal.models import ApiToken, Membership, OrgRole
from portal.tokens import sha256_hex
from tests.factories import Tenant
from tests.web.conftest import PASSWORD, check_page, sign_in

pytestmark = pytest.mark.django_db(transaction=True)
NEW_PASSWORD = "correct-horse-battery-staple-9"


def _sign_in_with(page: Any, live_server: Any, email: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()


def test_accept_an_invitation_and_set_a_password(live_server: Any, acme: Tenant, browser_page: Any,
                                                 settings: Any) -> None:
    settings.PORTAL_PUBLIC_URL = live_server.url
    accounts.invitation_create(actor=actor_for_user(acme.org, acme.users["admin"]), email="ada@acme.test",
                               role=OrgRole.MEMBER, team=acme.team)
    link = re.search(r"http://\S+/invitations/inv_\S+/", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body
    page = browser_page()
    page.goto(link.group(0))
    assert page.url == f"{live_server.url}/invitations/accept/"  # the token left the address bar
    assert page.get_by_role("heading", name="Join Acme Corporation").is_visible()
    page.get_by_label("Choose a password").fill("password")
    page.get_by_label("The same password again").fill("password")
    page.get_by_role("button", name="Set my password and sign in").click()
    assert page.get_by_text("This password is too common.").is_visible()
    check_page(page, "invitation-accept")
    page.get_by_label("Choose a password").fill(NEW_PASSWORD)
    page.get_by_label("The same password again").fill(NEW_PASSWORD)
    page.get_by_label("The same password again").press("Enter")  # from the keyboard
    page.wait_for_url(f"{live_server.url}/orgs/acme/")
    assert page.get_by_role("status").filter(has_text="Welcome to Acme Corporation").is_visible()
    page.get_by_role("button", name="Log out").click()
    _sign_in_with(page, live_server, "ada@acme.test", NEW_PASSWORD)
    assert page.url == f"{live_server.url}/orgs/acme/"
    page.goto(link.group(0))  # the link worked once
    assert page.get_by_role("heading", name="Invitation not valid").is_visible()


def test_reset_a_forgotten_password(live_server: Any, acme: Tenant, browser_page: Any, settings: Any) -> None:
    settings.PORTAL_PUBLIC_URL = live_server.url
    user = acme.users["member"]
    user.set_password(PASSWORD)
    user.save()
    page = browser_page()
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("E-mail address").fill(user.email)
    page.get_by_role("button", name="Send the link").click()
    assert page.get_by_role("heading", name="Check your e-mail").is_visible()
    check_page(page, "password-reset-sent")
    link = re.search(r"http://\S+/password/reset/\S+/\S+/", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body
    page.goto(link.group(0))
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("The same password again").fill(NEW_PASSWORD + "!")
    page.get_by_role("button", name="Set the new password").click()
    assert page.locator(".field-error").first.is_visible()
    check_page(page, "password-reset-confirm")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("The same password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    assert page.get_by_role("heading", name="Your password is changed").is_visible()
    _sign_in_with(page, live_server, user.email, NEW_PASSWORD)
    assert page.url == f"{live_server.url}/orgs/acme/"


def test_switch_organizations_and_create_copy_revoke_an_api_token(live_server: Any, acme: Tenant, globex: Tenant,
                                                                 browser_page: Any) -> None:
    user = acme.users["member"]
    Membership.objects.create(organization=globex.org, user=user, role=OrgRole.VIEWER)
    page = browser_page()
    sign_in(page, live_server, user, next_url="/orgs/acme/tokens/")
    assert page.get_by_role("heading", name="API tokens").is_visible()
    check_page(page, "tokens")
    # create one, from the keyboard
    page.get_by_label("Name").fill("deploy script")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_label("Name").press("Enter")
    assert page.get_by_role("heading", name="Token created").is_visible()
    plaintext = page.locator("#token-plaintext").inner_text().strip()
    assert ApiToken.objects.get(token_hash=sha256_hex(plaintext)).role == OrgRole.VIEWER
    page.get_by_role("button", name="Copy the token").click()
    assert page.evaluate("navigator.clipboard.readText()") == plaintext
    check_page(page, "token-created")
    page.get_by_role("link", name="Back to the API tokens").click()
    assert plaintext not in page.content()
    page.get_by_role("button", name="Revoke the token deploy script").click()
    assert page.get_by_role("status").filter(has_text="is revoked").is_visible()
    assert page.locator("#tokens tr", has_text="deploy script").locator(".badge.revoked").is_visible()
    # the switcher: the same section of the other organization
    page.get_by_label("Organization").select_option("globex")
    page.get_by_role("button", name="Switch").press("Enter")
    page.wait_for_url(f"{live_server.url}/orgs/globex/tokens/")
    assert page.locator("header").get_by_text("(viewer)").is_visible()
    assert "deploy script" not in page.locator("#tokens").inner_text()  # acme's tokens stay in acme
    check_page(page, "tokens-other-org")
