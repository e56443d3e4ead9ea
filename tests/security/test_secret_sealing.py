"""The sealing and the reference checks, without a proxy: what the portal
writes for the gateway, and what the plugin does with what it reads."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.conf import settings

from evals.models import LangfuseConnection
from gateway import documents
from gateway.models import RouteDeployment
from gateway.plugin import sealed
from gateway.plugin.secretrefs import find_secret_reference
from gateway.services import routes
from portal.access import system_actor
from tests.factories import Tenant

KEY = "k" * 40


def test_sealing_is_deterministic_bound_to_its_field_and_needs_the_key() -> None:
    sealer = sealed.Sealer(KEY)
    token = sealer.seal("sk-secret", "api_key")
    assert token.startswith(sealed.PREFIX) and "sk-secret" not in token
    assert sealer.seal("sk-secret", "api_key") == token  # the drift check compares documents as they are
    assert sealer.unseal(token, "api_key") == "sk-secret"
    with pytest.raises(sealed.SealingError):
        sealer.unseal(token, "aws_secret_access_key")  # not movable to another field
    with pytest.raises(sealed.SealingError):
        sealed.Sealer("x" * 40).unseal(token, "api_key")
    with pytest.raises(sealed.SealingError):
        sealed.Sealer("").unseal(token, "api_key")
    with pytest.raises(sealed.SealingError):
        sealed.Sealer("short")
    # rotation: a new key first seals, the old one still unseals
    assert sealed.Sealer(["n" * 40, KEY]).unseal(token, "api_key") == "sk-secret"


@pytest.mark.parametrize("value,where", [
    ("os.environ/X", ""), ("  OS.Environ/X", ""), ("Bearer os.environ/X", ""), ("oidc/env/X", ""),
    ({"a": {"b": ["ok", "hashicorp_vault/x"]}}, "a.b.1"), ({"os.environ/X": "v"}, ""),
    ("plain text about os.environ.get", None), ({"a": ["b", 1, None]}, None),
])
def test_references_are_found_wherever_they_are(value: Any, where: str | None) -> None:
    assert find_secret_reference(value) == where


def entry(**params: Any) -> dict[str, Any]:
    return {"model_name": "acme/chat", "litellm_params": {"model": "openai/m", **params},
            "model_info": {"id": "dep-1"}}


def test_the_plugin_unseals_in_memory_and_disables_what_it_cannot_use(caplog: Any) -> None:
    sealer = sealed.Sealer(KEY)
    good = sealed.unseal_entry(entry(api_key=sealer.seal("sk-real", "api_key")), sealer)
    assert good["litellm_params"]["api_key"] == "sk-real"
    with caplog.at_level(logging.ERROR, "portal.gateway"):
        other_key = sealed.unseal_entry(entry(api_key=sealed.Sealer("x" * 40).seal("sk-real", "api_key")), sealer)
        reference = sealed.unseal_entry(entry(mock_response="os.environ/LITELLM_MASTER_KEY"), sealer)
        header = sealed.unseal_entry(entry(extra_headers={"X": "os.environ/LITELLM_MASTER_KEY"}), sealer)
    assert other_key["litellm_params"] == {"model": "portal_unavailable/sealing"}
    assert reference["litellm_params"] == {"model": "portal_unavailable/reference"}
    assert header["litellm_params"] == {"model": "portal_unavailable/reference"}
    assert reference["model_info"]["id"] == "dep-1" and reference["model_name"] == "acme/chat"
    assert "LITELLM_MASTER_KEY" not in caplog.text and "sk-real" not in caplog.text
    assert "litellm_params.extra_headers.X" in caplog.text


def test_the_proxy_takes_its_key_out_of_its_environment(monkeypatch: Any) -> None:
    monkeypatch.setattr(sealed, "_proxy", None)
    monkeypatch.setenv(sealed.ENV, KEY)
    sealer, problem = sealed.proxy_sealer()
    import os

    assert problem is None and sealer.usable and sealed.ENV not in os.environ
    assert sealed.proxy_sealer()[0] is sealer
    monkeypatch.setattr(sealed, "_proxy", None)
    assert sealed.proxy_sealer()[1] == "GATEWAY_SEALING_KEY is not set"


@pytest.mark.django_db
def test_the_documents_hold_sealed_secrets_and_never_a_reference(acme: Tenant, caplog: Any) -> None:
    system = system_actor(acme.org, "tests")
    routes.route_create(actor=system, data={"name": "gpt", "deployments": [
        {"credential": acme.credential, "model": "gpt-4o"}]})
    planted = routes.route_create(actor=system, data={"name": "planted", "deployments": [
        {"credential": None, "model": "m", "litellm_params": {"mock_response": "x"}}]})
    RouteDeployment.objects.filter(route=planted).update(
        litellm_params={"mock_response": "os.environ/LITELLM_MASTER_KEY"})
    conn = LangfuseConnection(project=acme.project, host="https://langfuse.example", public_key="pk-lf-acme")
    conn.set_secret_key("sk-lf-acme-secret")
    conn.save()
    with caplog.at_level(logging.ERROR, "portal.gateway"):
        models = documents.models_document()
        project = documents.project_document(acme.project)
    text = json.dumps([models, project])
    assert "sk-provider-secret-value" not in text and "sk-lf-acme-secret" not in text
    assert find_secret_reference([models, project]) is None
    sealer = sealed.Sealer(settings.GATEWAY_SEALING_KEYS)
    gpt = next(e for e in models["model_list"] if e["model_name"] == "acme/gpt")
    assert sealer.unseal(gpt["litellm_params"]["api_key"], "api_key") == "sk-provider-secret-value"
    assert sealer.unseal(project["langfuse"]["secret_key"], "langfuse_secret_key") == "sk-lf-acme-secret"
    bad = next(e for e in models["model_list"] if e["model_name"] == "acme/planted")
    assert bad["litellm_params"] == {"model": "portal_unavailable/reference"}
    assert "holds a secret reference in litellm_params.mock_response" in caplog.text
    assert "LITELLM_MASTER_KEY" not in caplog.text


@pytest.mark.django_db
def test_the_litellm_admin_mode_never_pushes_a_reference_and_pushes_its_own_plain_secrets(acme: Tenant) -> None:
    from gateway.backends.litellm_admin import payloads as litellm_admin

    system = system_actor(acme.org, "tests")
    gpt = routes.route_create(actor=system, data={"name": "gpt", "deployments": [
        {"credential": acme.credential, "model": "gpt-4o"}]})
    planted = routes.route_create(actor=system, data={"name": "planted", "deployments": [
        {"credential": None, "model": "m", "litellm_params": {"mock_response": "x"}}]})
    RouteDeployment.objects.filter(route=planted).update(litellm_params={"extra_headers": {"X": "os.environ/PATH"}})
    payloads = litellm_admin.deployment_payloads(acme.org.pk)
    assert find_secret_reference(payloads) is None
    assert {p["model_name"] for p in payloads.values()} == {"acme/chat", "acme/gpt"}
    dep = gpt.deployments.get()
    # that LiteLLM keeps the secret in its own database, encrypted with its own key
    assert payloads[litellm_admin.deployment_id(dep.pk)]["litellm_params"]["api_key"] == "sk-provider-secret-value"


def test_the_proxy_inherits_only_the_gateways_own_settings() -> None:
    """LiteLLM reads provider defaults from its environment and resolves `os.environ/NAME`
    from it: `manage.py gateway` hands the proxy the system's basics and the gateway's own
    settings, nothing of the portal's."""
    from gateway.management.commands.gateway import proxy_base_env

    parent = {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "PYTHONPATH": "/app",
              "PORTAL_GATEWAY_CACHE_TTL": "60", "LITELLM_LOG": "INFO", "DJANGO_SECRET_KEY": "django-secret",
              "PORTAL_ENCRYPTION_KEYS": "fernet", "DATABASE_URL": "postgres://u:p@db/portal",
              "REDIS_URL": "redis://redis/0", "EMAIL_URL": "smtp://u:p@mail", "OPENAI_API_KEY": "sk-operator",
              "AWS_SECRET_ACCESS_KEY": "aws-secret", "LANGFUSE_SECRET_KEY": "sk-lf-platform"}
    assert proxy_base_env(parent) == {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "PYTHONPATH": "/app",
                                      "PORTAL_GATEWAY_CACHE_TTL": "60", "LITELLM_LOG": "INFO"}
