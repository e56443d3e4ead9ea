"""Provider credentials in the web UI (portal/web/gateway/credentials.py): org admins only; each provider's
own fields; secrets write-only (a page says "set", never the value, not even masked); other tenants 404."""

from __future__ import annotations

import json

import pytest

from gateway.models import ProviderCredential
from gateway.services import credentials
from tests.factories import Tenant
from tests.web.test_pages import login

pytestmark = pytest.mark.django_db
SECRET = "sk-very-secret-provider-value-123"


def url(t: Tenant, path: str = "") -> str:
    return f"/orgs/{t.org.slug}/credentials/{path}"


def test_each_provider_gets_its_own_fields(acme: Tenant) -> None:
    admin = login(acme, "admin")
    listing = admin.get(url(acme)).content.decode()
    assert "AWS Bedrock" in listing and url(acme, "new/bedrock/") in listing
    bedrock = admin.get(url(acme, "new/bedrock/")).content.decode()
    for name in ("settings-aws_region_name", "secrets-aws_access_key_id", "secrets-aws_secret_access_key",
                 "secrets-aws_session_token"):
        assert f'<label for="{name}">' in bedrock and f'id="{name}"' in bedrock, name
    assert "settings-api_base" not in bedrock
    vertex = admin.get(url(acme, "new/vertex_ai/")).content.decode()
    assert '<textarea id="secrets-vertex_credentials"' in vertex
    assert admin.get(url(acme, "new/not-a-provider/")).status_code == 404


def test_create_edit_and_the_secret_never_comes_back(acme: Tenant) -> None:
    admin = login(acme, "admin")
    created = admin.post(url(acme, "new/azure/"), {
        "name": "acme-azure", "settings-api_base": "https://acme.openai.azure.com", "settings-api_version": "2024-06-01",
        "secrets-api_key": SECRET}, follow=True)
    assert created.status_code == 200 and "Credential &#x27;acme-azure&#x27; created" in created.content.decode()
    cred = ProviderCredential.objects.get(name="acme-azure")
    assert credentials.credential_secrets(cred) == {"api_key": SECRET}
    for page in (url(acme), url(acme, f"{cred.pk}/")):
        html = admin.get(page).content.decode()
        assert SECRET not in html and SECRET[:8] not in html and "set" in html, page
    # an edit with the secret left empty keeps it; the settings change
    edited = admin.post(url(acme, f"{cred.pk}/"), {"name": "acme-azure", "settings-api_base": "https://acme.openai.azure.com",
                                                  "settings-api_version": "2025-01-01", "secrets-api_key": ""})
    assert edited.status_code == 302
    cred.refresh_from_db()
    assert cred.settings["api_version"] == "2025-01-01" and credentials.credential_secrets(cred) == {"api_key": SECRET}
    # moving the api_base without the secret again is refused, at the secrets, and the secret is not echoed
    moved = admin.post(url(acme, f"{cred.pk}/"), {"name": "acme-azure", "settings-api_base": "https://elsewhere.example",
                                                 "settings-api_version": "2025-01-01", "secrets-api_key": ""})
    assert moved.status_code == 400 and "Enter the secrets again" in moved.content.decode()
    retyped = admin.post(url(acme, f"{cred.pk}/"), {"name": "acme-azure", "settings-api_version": "2025-01-01",
                                                   "settings-api_base": "", "secrets-api_key": "sk-new-one"})
    assert retyped.status_code == 400 and "api_base" in retyped.content.decode()
    assert "sk-new-one" not in retyped.content.decode()  # a typed secret is not put back into the page


def test_bad_input_is_shown_at_its_field(acme: Tenant) -> None:
    admin = login(acme, "admin")
    page = admin.post(url(acme, "new/vertex_ai/"), {"name": "acme-vertex", "settings-vertex_project": "p",
                                                   "settings-vertex_location": "europe-west4",
                                                   "secrets-vertex_credentials": json.dumps({"type": "external_account"})})
    html = page.content.decode()
    assert page.status_code == 400 and "Paste the JSON key itself" in html
    assert html.index("Paste the JSON key itself") > html.index('id="secrets-vertex_credentials"')
    missing = admin.post(url(acme, "new/openai/"), {"name": acme.credential.name, "secrets-api_key": ""})
    assert missing.status_code == 400 and "already exists" in missing.content.decode()
    loopback = admin.post(url(acme, "new/openai_compatible/"), {"name": "acme-local", "settings-api_base": "file:///etc"})
    assert loopback.status_code == 400 and 'id="settings-api_base-help"' in loopback.content.decode()
    assert not ProviderCredential.objects.filter(name__in=["acme-vertex", "acme-local"]).exists()


def test_delete_is_refused_while_a_route_uses_it(acme: Tenant) -> None:
    admin = login(acme, "admin")
    from gateway.services import routes
    from portal.access import system_actor

    routes.route_create(actor=system_actor(acme.org, "tests"), data={
        "name": "real", "deployments": [{"credential": acme.credential, "model": "gpt-4o-mini"}]})
    refused = admin.post(url(acme, f"{acme.credential.pk}/delete/"), follow=True).content.decode()
    assert "Used by the routes real" in refused and ProviderCredential.objects.filter(pk=acme.credential.pk).exists()
    spare = credentials.credential_create(actor=system_actor(acme.org, "tests"), name="acme-spare", provider="anthropic",
                                          secrets={"api_key": SECRET})
    assert "deleted" in admin.post(url(acme, f"{spare.pk}/delete/"), follow=True).content.decode()
    assert not ProviderCredential.objects.filter(pk=spare.pk).exists()


@pytest.mark.parametrize("role", ["team_admin", "member", "viewer"])
def test_only_org_admins_reach_credentials(acme: Tenant, role: str) -> None:
    client = login(acme, role)
    assert client.get(url(acme)).status_code == 403
    assert client.get(url(acme, f"{acme.credential.pk}/")).status_code == 403
    assert client.post(url(acme, "new/openai/"), {"name": "x", "secrets-api_key": SECRET}).status_code == 403
    assert client.post(url(acme, f"{acme.credential.pk}/delete/")).status_code == 403
    assert ProviderCredential.objects.filter(pk=acme.credential.pk).exists()
    assert not ProviderCredential.objects.filter(name="x").exists()
    assert "/credentials/" not in client.get(f"/orgs/{acme.org.slug}/keys/").content.decode()  # no link


def test_another_organizations_credentials_answer_404(acme: Tenant, globex: Tenant) -> None:
    owner = login(globex, "owner")
    assert owner.get(url(acme)).status_code == 404
    assert owner.get(url(globex, f"{acme.credential.pk}/")).status_code == 404
    assert owner.post(url(globex, f"{acme.credential.pk}/"), {"name": "stolen"}).status_code == 404
    assert owner.post(url(globex, f"{acme.credential.pk}/delete/")).status_code == 404
    acme.credential.refresh_from_db()
    assert acme.credential.name == "acme-openai"


def test_an_optional_secret_can_be_removed_and_a_required_one_cannot(acme: Tenant) -> None:
    from portal.access import system_actor

    cred = credentials.credential_create(actor=system_actor(acme.org, "tests"), name="acme-bedrock", provider="bedrock",
                                         settings={"aws_region_name": "eu-west-1"},
                                         secrets={"aws_access_key_id": "AKIA1", "aws_secret_access_key": SECRET,
                                                  "aws_session_token": "token-1"})
    admin = login(acme, "admin")
    form = admin.get(url(acme, f"{cred.pk}/")).content.decode()
    assert 'name="clear-aws_session_token"' in form and 'name="clear-aws_secret_access_key"' not in form
    assert SECRET not in form and "token-1" not in form and "AKIA1" not in form
    saved = admin.post(url(acme, f"{cred.pk}/"), {"name": "acme-bedrock", "settings-aws_region_name": "eu-west-1",
                                                 "clear-aws_session_token": "1"})
    assert saved.status_code == 302
    cred.refresh_from_db()
    assert credentials.credential_secrets(cred) == {"aws_access_key_id": "AKIA1", "aws_secret_access_key": SECRET}
    forged = admin.post(url(acme, f"{cred.pk}/"), {"name": "acme-bedrock", "settings-aws_region_name": "eu-west-1",
                                                  "clear-aws_secret_access_key": "1"})
    assert forged.status_code == 302  # a required secret has no clear box; a forged one is ignored
    cred.refresh_from_db()
    assert credentials.credential_secrets(cred)["aws_secret_access_key"] == SECRET
