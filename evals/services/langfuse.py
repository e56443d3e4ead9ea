"""Connecting a project to its Langfuse project."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import LangfuseConnection
from gateway import changes
from portal import audit
from portal.access import Actor
from portal.models import Project

FIELDS = ("host", "public_key", "enabled", "server_version", "langfuse_project_name")


def state(conn: LangfuseConnection) -> dict[str, Any]:
    return audit.snapshot(conn, FIELDS, secret_key=audit.MASK)


def check_keys(host: str, public_key: str, secret_key: str) -> dict[str, Any]:
    """Health and an authenticated call, with a message a user can act on."""
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
