"""Provider credentials and model routes through the REST API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.models import ModelRoute, ProviderCredential, RouteDeployment
from portal import crypto
from portal.models import AuditLogEntry
from tests.factories import Tenant


def mock_route(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "deployments": [{"model": "m", "litellm_params": {"mock_response": "hi"}}]} | extra


@pytest.mark.django_db
def test_credential_secrets_are_write_only_and_encrypted(acme: Tenant) -> None:
    client = acme.client("admin")
    response = client.post(acme.url("credentials/"), {
        "name": "bedrock-eu", "provider": "bedrock", "settings": {"aws_region_name": "eu-west-1"},
        "secrets": {"aws_access_key_id": "AKIAEXAMPLE123", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}},
        format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert "secrets" not in body and body["secret_fields"] == ["aws_access_key_id", "aws_secret_access_key"]
    for read in (client.get(acme.url(f"credentials/{body['id']}/")), client.get(acme.url("credentials/"))):
        assert "wJalrXUtnFEMI" not in read.content.decode() and "AKIAEXAMPLE123" not in read.content.decode()
    cred = ProviderCredential.objects.get(pk=body["id"])
    assert "wJalrXUtnFEMI" not in cred.secrets_encrypted
    assert crypto.decrypt_json(cred.secrets_encrypted)["aws_secret_access_key"] == "wJalrXUtnFEMI/K7MDENG"
    # an update replaces only the named secret; the audit log shows a mask
    client.patch(acme.url(f"credentials/{cred.pk}/"), {"secrets": {"aws_access_key_id": "AKIANEW"}}, format="json")
    cred.refresh_from_db()
    stored = crypto.decrypt_json(cred.secrets_encrypted)
    assert stored == {"aws_access_key_id": "AKIANEW", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}
    entry = AuditLogEntry.objects.filter(action="credential.update").latest("id")
    assert entry.after["secrets"] == {"aws_access_key_id": "********", "aws_secret_access_key": "********"}
    assert "AKIANEW" not in json.dumps([entry.before, entry.after])


@pytest.mark.django_db
@pytest.mark.parametrize("body,message", [
    ({"provider": "azure", "secrets": {"api_key": "k"}}, "api_base: This setting is required for azure."),
    ({"provider": "openai"}, "api_key: This secret is required for openai."),
    ({"provider": "openai", "secrets": {"api_key": "k", "password": "x"}}, "password: Unknown field"),
    ({"provider": "openai_compatible", "settings": {"api_base": "ftp://x"}}, "api_base: Expected an http(s) URL."),
    ({"provider": "cohere", "secrets": {"api_key": "k"}}, "is not a valid choice"),
])
def test_credential_validation_per_provider(acme: Tenant, body: dict[str, Any], message: str) -> None:
    response = acme.client("admin").post(acme.url("credentials/"), {"name": "x"} | body, format="json")
    assert response.status_code == 400
    assert message in json.dumps(response.json()), response.json()
    assert not ProviderCredential.objects.filter(name="x").exists()


@pytest.mark.django_db
def test_self_hosted_openai_compatible_credential_needs_no_key(acme: Tenant) -> None:
    response = acme.client("admin").post(acme.url("credentials/"), {
        "name": "vllm", "provider": "openai_compatible", "settings": {"api_base": "http://vllm.internal:8000/v1"}},
        format="json")
    assert response.status_code == 201 and response.json()["secret_fields"] == []


@pytest.mark.django_db
def test_route_with_deployments_fallbacks_and_teams(acme: Tenant) -> None:
    client = acme.client("admin")
    assert client.post(acme.url("routes/"), mock_route("backup"), format="json").status_code == 201
    response = client.post(acme.url("routes/"), {
        "name": "gpt", "num_retries": 2, "timeout_seconds": 30, "input_cost_per_million": "0.15",
        "allowed_teams": [acme.team.pk], "fallbacks": ["backup"],
        "deployments": [
            {"credential": acme.credential.pk, "model": "gpt-4o-mini", "priority": 0,
             "litellm_params": {"temperature": 0.2}},
            {"credential": acme.credential.pk, "model": "gpt-4o", "priority": 1, "weight": 3},
        ]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["model_group"] == "acme/gpt" and body["fallbacks"] == ["backup"]
    assert [d["model"] for d in body["deployments"]] == ["gpt-4o-mini", "gpt-4o"]
    assert body["allowed_teams"] == [acme.team.pk]
    # replacing the deployments replaces them all
    client.patch(acme.url(f"routes/{body['id']}/"), {"deployments": [{"credential": acme.credential.pk,
                                                                      "model": "o3"}]}, format="json")
    assert list(RouteDeployment.objects.filter(route_id=body["id"]).values_list("model", flat=True)) == ["o3"]


@pytest.mark.django_db
@pytest.mark.parametrize("body,field", [
    ({"deployments": []}, "deployments"),
    ({"deployments": [{"model": "m"}]}, "deployments"),  # no credential and no mock_response
    ({"deployments": [{"model": "m", "litellm_params": {"api_key": "sneaky"}}]}, "deployments"),
    ({"deployments": [{"model": "m", "litellm_params": {"mock_response": 5}}]}, "deployments"),
    ({"name": "bad name!"}, "name"),
    ({"name": "chat"}, "name"),  # taken in this org
    ({"num_retries": 99}, "num_retries"),
    ({"fallbacks": ["nope"]}, "fallbacks"),
    ({"allowed_teams": [10**9]}, "allowed_teams"),
    ({"input_cost_per_million": -1}, "input_cost_per_million"),
])
def test_route_validation(acme: Tenant, body: dict[str, Any], field: str) -> None:
    before = ModelRoute.objects.count(), RouteDeployment.objects.count()
    response = acme.client("admin").post(acme.url("routes/"), mock_route("new") | body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert (ModelRoute.objects.count(), RouteDeployment.objects.count()) == before


@pytest.mark.django_db
def test_route_names_are_per_organization(acme: Tenant, globex: Tenant) -> None:
    assert ModelRoute.objects.filter(name="chat").count() == 2  # both tenants have "chat"
    response = acme.client("admin").post(acme.url("routes/"), mock_route("x", fallbacks=["chat"]), format="json")
    assert response.status_code == 201
    route = ModelRoute.objects.get(pk=response.json()["id"])
    assert [link.fallback.organization.slug for link in route.fallback_links.all()] == ["acme"]
    foreign_credential = acme.client("admin").post(acme.url("routes/"), {
        "name": "y", "deployments": [{"credential": globex.credential.pk, "model": "m"}]}, format="json")
    assert foreign_credential.status_code == 400


@pytest.mark.django_db
def test_route_used_by_a_key_cannot_be_deleted(acme: Tenant) -> None:
    client = acme.client("owner")
    client.patch(acme.url(f"keys/{acme.key.pk}/"), {"allowed_routes": ["chat"]}, format="json")
    response = client.delete(acme.url(f"routes/{acme.route.pk}/"))
    assert response.status_code == 400 and "key" in response.json()["route"][0]
    client.post(acme.url(f"keys/{acme.key.pk}/revoke/"))
    assert client.delete(acme.url(f"routes/{acme.route.pk}/")).status_code == 204


@pytest.mark.django_db
def test_credential_in_use_cannot_be_deleted(acme: Tenant) -> None:
    client = acme.client("admin")
    client.post(acme.url("routes/"), {"name": "real", "deployments": [
        {"credential": acme.credential.pk, "model": "gpt-4o"}]}, format="json")
    response = client.delete(acme.url(f"credentials/{acme.credential.pk}/"))
    assert response.status_code == 400 and "real" in response.json()["credential"][0]
