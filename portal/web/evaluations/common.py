"""What the evaluation pages share: the project page base, form errors, the Langfuse connection."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, QueryDict

from evals.models import LangfuseConnection
from portal.api.errors import validation_detail
from portal.exceptions import Conflict
from portal.models import OrgRole, Project
from portal.tenancy import Parent
from portal.web.base import PROJECT, OrgPage


class ProjectPage(OrgPage):
    """A page of one project. Everyone in the organization reads; writes need the team's or the
    organization's admin role, which the services check (as in the API): members reach the POST,
    the service decides."""

    parents: ClassVar[tuple[Parent, ...]] = (PROJECT,)
    write_role = OrgRole.MEMBER

    @property
    def project(self) -> Project:
        return self.parent(Project)

    def manages(self) -> bool:
        return self.actor.manages_team(self.project.team_id)

    def connection(self) -> LangfuseConnection | None:
        """The project's Langfuse connection (read once per request)."""
        if "_connection" not in self.__dict__:
            self._connection = LangfuseConnection.objects.visible_to(self.actor, "view").filter(
                project=self.project).first()
        return self._connection

    def page(self, template: str, *, http_status: int = 200, **context: Any) -> Any:
        return super().page(template, http_status=http_status, project=self.project, manages=self.manages(),
                            langfuse=self.connection(), **context)


def errors_of(exc: Exception) -> dict[str, list[str]]:
    """A service's refusal as field errors (`non_field_errors` for the others)."""
    if isinstance(exc, ValidationError):
        return {k: [str(m) for m in v] for k, v in validation_detail(exc).items()}
    if isinstance(exc, (PermissionDenied, Conflict)):
        return {"non_field_errors": [str(exc) or "Not allowed."]}
    raise exc


def drf_errors(errors: Any) -> dict[str, list[str]]:
    """A serializer's errors as {field: [message]} (nested ones flattened into text)."""
    out: dict[str, list[str]] = {}
    for field, value in dict(errors).items():
        items = value if isinstance(value, list) else [value]
        out[field] = [str(v) if not isinstance(v, (dict, list)) else "; ".join(_flat(v)) for v in items]
    return out


def _flat(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _flat(v)]
    if isinstance(value, list):
        return [m for v in value for m in _flat(v)]
    return [str(value)]


def flash_errors(request: HttpRequest, errors: dict[str, list[str]]) -> None:
    for field, msgs in errors.items():
        for m in msgs:
            messages.error(request, m if field == "non_field_errors" else f"{field}: {m}")


def text(post: QueryDict, name: str) -> str:
    """A form field's text ('' when missing)."""
    value = post.get(name, "")
    return value if isinstance(value, str) else ""


def optional(post: QueryDict, *fields: str) -> dict[str, Any]:
    """The fields that were filled in (a blank input means 'not given')."""
    return {f: text(post, f).strip() for f in fields if text(post, f).strip() != ""}
