"""Single sign-on against a real OpenID provider: django-oauth-toolkit's OIDC in its own process
(tests/oidc_provider), the portal's mozilla-django-oidc client, the organization map."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from portal import accounts
from portal.models import AuditLogEntry, Membership, OrgRole
from tests.factories import Tenant
from tests.web.conftest import check_page

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET = "llmops-portal", "portal-client-secret-for-tests"
OP_PASSWORD = "op-password-1234"
ORG_MAP = {"group:eng": ["acme", "member"], "group:acme-admins": ["acme", "admin"],
           "domain:globex.test": ["globex", "viewer"]}


@dataclass
class Provider:
    url: str

    def endpoint(self, path: str) -> str:
        return f"{self.url}/o/{path}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def oidc_provider(live_server: Any, tmp_path_factory: Any) -> Iterator[Provider]:
    """The provider process, with the portal (at the live server) registered as its client and
    its people: dev@acme.test (group eng), boss@acme.test (group acme-admins), new@globex.test
    (no group: mapped by domain) and sneaky@globex.test (address not verified)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT),
           "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
           "OIDC_PROVIDER_DB": str(tmp_path_factory.mktemp("oidc") / "op.sqlite3"),
           "OIDC_PROVIDER_RSA_KEY": key, "OIDC_PROVIDER_UNVERIFIED": "sneaky@globex.test"}
    django = [sys.executable, "-m", "django"]
    subprocess.run([*django, "migrate", "-v0"], env=env, check=True, cwd=ROOT, timeout=120)
    users = [f"dev@acme.test:{OP_PASSWORD}:eng", f"boss@acme.test:{OP_PASSWORD}:acme-admins,eng",
             f"new@globex.test:{OP_PASSWORD}:", f"sneaky@globex.test:{OP_PASSWORD}:",
             f"member@acme.test:{OP_PASSWORD}:eng"]
    subprocess.run([*django, "oidc_setup", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                    "--redirect-uri", f"{live_server.url}/sso/callback/",
                    *[a for u in users for a in ("--user", u)]], env=env, check=True, cwd=ROOT, timeout=60)
    port = _free_port()
    process = subprocess.Popen([*django, "runserver", f"127.0.0.1:{port}", "--noreload"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    provider = Provider(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(provider.endpoint(".well-known/openid-configuration"), timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the OpenID provider did not start")
            time.sleep(0.2)
        yield provider
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sso(settings: Any, oidc_provider: Provider) -> Provider:
    """The portal configured for the provider, as the OIDC_* variables would configure it."""
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = oidc_provider.endpoint("authorize/")
    settings.OIDC_OP_TOKEN_ENDPOINT = oidc_provider.endpoint("token/")
    settings.OIDC_OP_USER_ENDPOINT = oidc_provider.endpoint("userinfo/")
    settings.OIDC_OP_JWKS_ENDPOINT = oidc_provider.endpoint(".well-known/jwks.json")
    settings.OIDC_ORG_MAP = ORG_MAP
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                                        "portal.web.accounts.oidc.PortalOIDCBackend"]
    return oidc_provider


def _sso_sign_in(page: Any, live_server: Any, email: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with SSO").click()
    page.fill("#op-username", email)
    page.fill("#op-password", OP_PASSWORD)
    page.get_by_role("button", name="Sign in at the provider").click()
    page.wait_for_load_state()


@pytest.mark.django_db(transaction=True)
def test_sso_sign_in_maps_groups_and_domains_to_organizations(live_server: Any, acme: Tenant, globex: Tenant,
                                                              sso: Provider, browser_page: Any) -> None:
    page = browser_page()
    page.goto(f"{live_server.url}/login/")
    check_page(page, "login-sso")
    _sso_sign_in(page, live_server, "dev@acme.test")
    assert page.url == f"{live_server.url}/orgs/acme/", page.url
    assert page.locator("header").get_by_text("(member)").is_visible()
    check_page(page, "sso-signed-in")
    dev = Membership.objects.get(organization=acme.org, user__email="dev@acme.test")
    assert dev.role == OrgRole.MEMBER and not dev.user.has_usable_password()
    entry = AuditLogEntry.objects.get(organization=acme.org, action="membership.create", target_id=str(dev.pk))
    assert entry.actor_label == "SSO sign-in (group:eng)"

    # a verified address of a mapped domain: a viewer of globex
    other = browser_page()
    _sso_sign_in(other, live_server, "new@globex.test")
    assert other.url == f"{live_server.url}/orgs/globex/", other.url
    assert Membership.objects.get(organization=globex.org, user__email="new@globex.test").role == OrgRole.VIEWER

    # an address the provider did not verify: refused, and nothing mapped
    sneaky = browser_page()
    _sso_sign_in(sneaky, live_server, "sneaky@globex.test")
    assert "/login/?sso=failed" in sneaky.url
    assert sneaky.get_by_role("alert").filter(has_text="Single sign-on did not work").is_visible()
    assert not Membership.objects.filter(user__email="sneaky@globex.test").exists()


@pytest.mark.django_db(transaction=True)
def test_sso_never_lowers_a_role_a_person_set_higher(live_server: Any, acme: Tenant, sso: Provider,
                                                     browser_page: Any) -> None:
    # member@acme.test is in "eng" (member) and an acme admin made them admin: it stays admin
    Membership.objects.filter(organization=acme.org, user__email="member@acme.test").update(role=OrgRole.ADMIN)
    page = browser_page()
    _sso_sign_in(page, live_server, "member@acme.test")
    assert page.url == f"{live_server.url}/orgs/acme/"
    assert Membership.objects.get(organization=acme.org, user__email="member@acme.test").role == OrgRole.ADMIN
    # ...and a lower role is raised to the mapped one, audited
    Membership.objects.filter(organization=acme.org, user__email="member@acme.test").update(role=OrgRole.VIEWER)
    page.context.clear_cookies()
    _sso_sign_in(page, live_server, "member@acme.test")
    assert Membership.objects.get(organization=acme.org, user__email="member@acme.test").role == OrgRole.MEMBER
    assert AuditLogEntry.objects.filter(organization=acme.org, action="membership.update",
                                        actor_label="SSO sign-in (group:eng)").exists()


# The map itself, without a provider ---------------------------------------------

def test_the_highest_mapped_role_wins_and_domains_need_a_verified_address(settings: Any) -> None:
    settings.OIDC_ORG_MAP = ORG_MAP
    boss = {"email": "boss@acme.test", "email_verified": True, "groups": ["eng", "acme-admins"]}
    assert accounts.sso_wanted_roles(boss) == {"acme": ("admin", "group:acme-admins")}
    verified = {"email": "x@GLOBEX.test", "email_verified": True}
    assert accounts.sso_wanted_roles(verified) == {"globex": ("viewer", "domain:globex.test")}
    for flag in (False, None, "false", 1):
        assert accounts.sso_wanted_roles({**verified, "email_verified": flag}) == {}
    hostile = {"email": ["x@globex.test"], "email_verified": True, "groups": "eng"}
    assert accounts.sso_wanted_roles(hostile) == {"acme": ("member", "group:eng")}
    assert accounts.sso_wanted_roles({"groups": [{"eng": 1}, None, 3]}) == {}


@pytest.mark.django_db
def test_the_map_makes_no_owner_and_skips_unknown_organizations(settings: Any, acme: Tenant) -> None:
    settings.OIDC_ORG_MAP = {"group:eng": ["nowhere", "admin"], "group:x": ["acme", "viewer"]}
    user = accounts.sso_user({"email": "fresh@acme.test", "email_verified": True})
    changed = accounts.sso_apply_mapping(user=user, claims={"email": user.email, "groups": ["eng", "x"]})
    assert [(m.organization.slug, m.role) for m in changed] == [("acme", "viewer")]
    owner = acme.users["owner"]
    assert accounts.sso_apply_mapping(user=owner, claims={"email": owner.email, "groups": ["x"]}) == []
    assert Membership.objects.get(organization=acme.org, user=owner).role == OrgRole.OWNER


def test_a_bad_map_stops_the_start() -> None:
    env = {**os.environ, "OIDC_ORG_MAP": '{"group:eng": ["acme", "owner"]}'}
    result = subprocess.run([sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE']="
                             "'portal.settings'; django.setup()"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "OIDC_ORG_MAP" in result.stderr


@pytest.mark.django_db
def test_a_forged_or_failed_callback_goes_back_to_sign_in(settings: Any) -> None:
    from django.test import Client

    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens: the provider is down
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{closed}/o/authorize/"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{closed}/o/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{closed}/o/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{closed}/o/.well-known/jwks.json"
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                                        "portal.web.accounts.oidc.PortalOIDCBackend"]
    client = Client()
    start = client.get("/sso/start/?next=https://evil.example/")
    assert start.status_code == 302 and start["Location"].startswith(f"{closed}/o/authorize/?")
    assert "code_challenge=" in start["Location"]  # PKCE
    assert client.session.get("oidc_login_next") is None  # an outside "next" is dropped
    state = next(iter(client.session["oidc_states"]))
    for query in ("code=x&state=forged", "error=access_denied", f"code=x&state={state}"):  # the last: provider down
        response = client.get(f"/sso/callback/?{query}")
        assert response.status_code == 302 and response["Location"] == "/login/?sso=failed", query
    assert "_auth_user_id" not in client.session
    assert b"Single sign-on did not work" in client.get("/login/?sso=failed").content
