"""python manage.py langfuse_connect ORG PROJECT [--host URL] [--public-key PK] [--secret-key SK] [--env-file PATH]

Connects a portal project to a Langfuse project in one step, typically the
self-hosted Langfuse of stacks/langfuse/: what is not given on the command line
is read from that stack's env file (its LANGFUSE_INIT_PROJECT_* keys, and
PORTAL_LANGFUSE_HOST, default http://langfuse-web:3000, the stack's name on the
portal's network). The connection goes through the same service as the web UI
and the API (`evals.services.langfuse.connection_save`): the keys are checked
against the host under the outbound URL policy, the secret key is stored
encrypted, the change is audited, and the gateway gets it on commit. A Langfuse
project another organization is connected to is refused (the stack's default
keys would otherwise connect every organization to one project)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Q

from evals.models import LangfuseConnection
from evals.services import langfuse
from gateway.models import SyncKind, SyncOutbox
from portal.access import system_actor
from portal.models import Organization, Project

DEFAULT_ENV_FILE = "stacks/langfuse/.env"
DEFAULT_HOST = "http://langfuse-web:3000"
ACTOR_LABEL = "manage.py langfuse_connect"


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a compose-style env file (KEY=value lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def find_project(org: Organization, ref: str) -> Project:
    """The organization's project by id or by name; another organization's is not found."""
    projects = Project.objects.filter(organization=org)
    project = None
    if "\x00" not in ref:  # PostgreSQL refuses NUL in text: not a name anyone has
        project = projects.filter(pk=int(ref)).first() if ref.isdigit() and len(ref) < 19 else None
        project = project or projects.filter(name=ref).first()
    if project is None:
        raise CommandError(f"Organization '{org.slug}' has no project '{ref}' (give its id or its name).")
    return project


SHARED = ("Not connected: another organization's project is connected to this Langfuse project. Traces and "
          "evaluations of two organizations must not mix: create a Langfuse project (and its keys) for each "
          "organization and pass them with --public-key and --secret-key.")


def used_by_another_organization(conn: LangfuseConnection) -> bool:
    """Whether another organization is connected to the same Langfuse project (the stack's default keys
    make it easy to connect every organization to one): its traces, scores and datasets would mix.
    Projects of one organization may share one."""
    same = Q(public_key=conn.public_key)
    if conn.langfuse_project_id:
        same |= Q(langfuse_project_id=conn.langfuse_project_id)
    # Whatever the host's spelling (localhost or 127.0.0.1, a name or its address, upper case): a public key
    # and a Langfuse project id belong to one Langfuse project.
    others = LangfuseConnection.objects.exclude(project__organization_id=conn.project.organization_id)
    return others.filter(same).exists()


def error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = ("Connect a portal project to a Langfuse project (keys checked against the host, stored encrypted, "
            "audited, pushed to the gateway). Defaults come from the Langfuse stack's env file.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org", help="The organization's slug.")
        parser.add_argument("project", help="The project's id or name in the organization.")
        parser.add_argument("--host", help=f"Langfuse's address as the portal and the gateway reach it "
                                           f"(default: PORTAL_LANGFUSE_HOST in the env file, else {DEFAULT_HOST}).")
        parser.add_argument("--public-key", help="default: LANGFUSE_INIT_PROJECT_PUBLIC_KEY in the env file")
        parser.add_argument("--secret-key", help="default: LANGFUSE_SECRET_KEY in the environment, else "
                                                 "LANGFUSE_INIT_PROJECT_SECRET_KEY in the env file")
        parser.add_argument("--env-file", help=f"The Langfuse stack's env file (default: {DEFAULT_ENV_FILE}, "
                                               "read when it exists).")

    def handle(self, *args: Any, org: str, project: str, host: str | None, public_key: str | None,
               secret_key: str | None, env_file: str | None, **options: Any) -> None:
        stack = self.stack_env(env_file)
        host = host or stack.get("PORTAL_LANGFUSE_HOST") or DEFAULT_HOST
        public_key = public_key or stack.get("LANGFUSE_INIT_PROJECT_PUBLIC_KEY")
        secret_key = (secret_key or os.environ.get("LANGFUSE_SECRET_KEY")
                      or stack.get("LANGFUSE_INIT_PROJECT_SECRET_KEY"))
        missing = [flag for flag, value in (("--public-key", public_key), ("--secret-key", secret_key)) if not value]
        if missing:
            raise CommandError(f"Give {' and '.join(missing)} (or set LANGFUSE_INIT_PROJECT_PUBLIC_KEY and "
                               f"LANGFUSE_INIT_PROJECT_SECRET_KEY in {env_file or DEFAULT_ENV_FILE}).")
        organization = None if "\x00" in org else Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"There is no organization '{org}'.")
        target = find_project(organization, project)
        actor = system_actor(organization, ACTOR_LABEL)
        try:
            with transaction.atomic():  # the push runs on commit: none when the connection is refused
                conn = langfuse.connection_save(actor=actor, project=target, host=host, public_key=str(public_key),
                                                secret_key=secret_key)
                if used_by_another_organization(conn):
                    raise CommandError(SHARED)
        except ValidationError as exc:
            raise CommandError(f"Not connected: {error_text(exc)}") from None
        except PermissionDenied as exc:  # not expected for a system actor; never a traceback
            raise CommandError(f"Not connected: {exc}") from None
        pending = SyncOutbox.objects.filter(kind=SyncKind.PROJECT, object_id=target.pk, done_at__isnull=True)
        pushed = not pending.exists()
        self.stdout.write(f"Connected project '{target.name}' of '{organization.slug}' to Langfuse project "
                          f"'{conn.langfuse_project_name}' at {conn.host} (Langfuse {conn.server_version or '?'}); "
                          + ("the gateway has it." if pushed else
                             "the gateway gets it when the sync queue runs (the immediate push failed)."))

    def stack_env(self, env_file: str | None) -> dict[str, str]:
        if env_file:
            return read_env_file(Path(env_file))
        default = Path(settings.BASE_DIR) / DEFAULT_ENV_FILE
        return read_env_file(default) if default.exists() else {}
