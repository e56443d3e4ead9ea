"""Connecting a project to its Langfuse project."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import LangfuseConnection, LangfuseOrgKey
from gateway import changes
from portal import audit, outbound
from portal.access import Actor
from portal.models import OrgRole, Project
from portal.secretrefs import refuse_secret_references

FIELDS = ("host", "public_key", "enabled", "server_version", "langfuse_project_name")


def state(conn: LangfuseConnection) -> dict[str, Any]:
    return audit.snapshot(conn, FIELDS, secret_key=audit.MASK)


HOST_CHANGE = "Enter the secret key again when you change the host."


def _same_host(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def refuse_references(host: str, public_key: str, secret_key: str) -> None:
    """The gateway hands these to LiteLLM's Langfuse logging, which resolves
    secret references in them: an `os.environ/NAME` public key would send the
    gateway's own secrets to the host as credentials."""
    for field, value in (("host", host), ("public_key", public_key), ("secret_key", secret_key)):
        refuse_secret_references(value, field)


def check_keys(host: str, public_key: str, secret_key: str) -> dict[str, Any]:
    """Health and an authenticated call, with a message a user can act on."""
    refuse_references(host, public_key, secret_key)
    outbound.validate("host", host)
    with LangfuseClient(host, public_key, secret_key, timeout=5, max_retries=1) as client:
        try:
            return client.check()
        except LangfuseError as exc:
            raise ValidationError({"host" if exc.status is None else "secret_key": str(exc)}) from None


@transaction.atomic
def connection_save(*, actor: Actor, project: Project, host: str, public_key: str, secret_key: str | None,
                    enabled: bool = True) -> LangfuseConnection:
    actor.require_team_manager(project.team_id)
    conn = LangfuseConnection.objects.select_for_update().filter(project=project).first()
    before = state(conn) if conn else None
    if conn is None and not secret_key:
        raise ValidationError({"secret_key": "Required for a new connection."})
    if conn is not None and not secret_key and not _same_host(conn.host, host):
        # The stored secret goes only to the host it was entered for.
        raise ValidationError({"secret_key": HOST_CHANGE})
    secret = secret_key or (conn.secret_key() if conn else "")
    info = check_keys(host, public_key, secret)
    conn = conn or LangfuseConnection(project=project)
    conn.host, conn.public_key, conn.enabled = host.rstrip("/"), public_key, enabled
    conn.set_secret_key(secret)
    conn.server_version = info["version"]
    conn.langfuse_project_id = str((info["project"] or {}).get("id", ""))[:200]
    conn.langfuse_project_name = str((info["project"] or {}).get("name", ""))[:200]
    conn.checked_at = timezone.now()
    conn.full_clean()
    conn.save()
    audit.record(actor, "langfuse.update" if before else "langfuse.create", conn, before=before, after=state(conn))
    changes.project_changed(project.pk)
    return conn


@transaction.atomic
def connection_delete(*, actor: Actor, connection: LangfuseConnection) -> None:
    actor.require_team_manager(connection.project.team_id)
    audit.record(actor, "langfuse.delete", connection, before=state(connection))
    project_id = connection.project_id
    connection.delete()
    changes.project_changed(project_id)


ENTITLEMENT_HELP = ("Creating Langfuse projects needs an organization API key with Langfuse's enterprise "
                    "entitlement. Create the project in Langfuse instead and connect it with its keys "
                    "(PUT .../langfuse/).")


@transaction.atomic
def org_key_save(*, actor: Actor, host: str, public_key: str, secret_key: str) -> LangfuseOrgKey:
    """An organization key, checked with the organization API before it is kept."""
    actor.require(OrgRole.ADMIN)
    if not secret_key:  # never checked against a new host with the stored one
        raise ValidationError({"secret_key": "Enter the secret key: it is needed on every save."})
    refuse_references(host, public_key, secret_key)
    outbound.validate("host", host)
    with LangfuseClient(host, public_key, secret_key, timeout=5, max_retries=1) as client:
        try:
            client.server()
            client.organization_projects()
        except LangfuseError as exc:
            if exc.status == 403:
                raise ValidationError({"public_key": f"{exc} {ENTITLEMENT_HELP}"}) from None
            raise ValidationError({"host" if exc.status is None else "secret_key": str(exc)}) from None
    key, _ = LangfuseOrgKey.objects.get_or_create(organization=actor.organization,
                                                  defaults={"host": host, "public_key": public_key})
    key.host, key.public_key = host.rstrip("/"), public_key
    key.set_secret_key(secret_key)
    key.save()
    audit.record(actor, "langfuse_org_key.update", key, after={"host": key.host, "public_key": public_key,
                                                              "secret_key": audit.MASK})
    return key


@transaction.atomic
def org_key_delete(*, actor: Actor, key: LangfuseOrgKey) -> None:
    actor.require(OrgRole.ADMIN)
    audit.record(actor, "langfuse_org_key.delete", key, before={"host": key.host, "public_key": key.public_key,
                                                                "secret_key": audit.MASK})
    key.delete()


def _made_for(langfuse_project: dict[str, Any], project: Project) -> bool:
    """Whether `provision` created this Langfuse project for this portal project:
    names are free again after a rename, so a name alone must not hand over
    another project's Langfuse (its traces and a new key to it)."""
    metadata = langfuse_project.get("metadata") or {}
    return isinstance(metadata, dict) and str(metadata.get("portal_project")) == str(project.pk)


def provision(*, actor: Actor, project: Project) -> LangfuseConnection:
    """Create the project's Langfuse project and a key pair with the
    organization key, then connect them (as `connection_save` does)."""
    actor.require_team_manager(project.team_id)
    org_key = LangfuseOrgKey.objects.filter(organization=actor.organization).first()
    if org_key is None:
        raise ValidationError({"langfuse": "The organization has no Langfuse organization key. " + ENTITLEMENT_HELP})
    name = f"{actor.organization.slug}-{project.name}"[:200]
    with LangfuseClient(org_key.host, org_key.public_key, org_key.secret_key(), timeout=10, max_retries=2) as client:
        try:
            existing = next((p for p in client.organization_projects() if p.get("name") == name), None)
            if existing is not None and not _made_for(existing, project):
                raise ValidationError({"langfuse": f"Langfuse already has a project named '{name}' that was not "
                                                   "created for this project; rename this project, or connect it "
                                                   "with its own keys (PUT .../langfuse/)."})
            created = existing or client.create_project(name, {"portal_project": project.pk})
            pair = client.create_project_api_key(created["id"], note=f"LLMOps portal, project {project.pk}")
        except LangfuseError as exc:
            if exc.status == 403:
                raise ValidationError({"langfuse": ENTITLEMENT_HELP}) from None
            raise ValidationError({"langfuse": str(exc)}) from None
    return connection_save(actor=actor, project=project, host=org_key.host, public_key=pair["publicKey"],
                           secret_key=pair["secretKey"])
