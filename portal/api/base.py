"""The one place where the tenant is resolved and every queryset is scoped.

Every view under `/api/v1/orgs/{org_slug}/` derives from `OrgScopedViewSet`:
it resolves the organization from the URL, answers 404 to anyone who is not a
member (so an outsider cannot even learn that the organization exists), checks
the role the action needs (403), and filters the queryset by organization.
Subclasses narrow the queryset with `narrow_queryset`; they cannot override
`get_queryset`."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.db.models import Model, QuerySet
from rest_framework import exceptions, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from portal.access import Actor, NotAMember, actor_for_user
from portal.models import ApiToken, Organization, OrgRole, TokenScope


def client_ip(request: Request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class OrgScopedViewSet(viewsets.GenericViewSet):
    #: the lookup from the model to its organization
    org_field: ClassVar[str] = "organization"
    #: the lowest organization role for reading and for writing
    read_role: ClassVar[str] = OrgRole.VIEWER
    write_role: ClassVar[str] = OrgRole.ADMIN
    #: per-action overrides of the two above
    action_roles: ClassVar[dict[str, str]] = {}
    #: which token scopes may read / write here
    read_scopes: ClassVar[tuple[str, ...]] = (TokenScope.FULL,)
    write_scopes: ClassVar[tuple[str, ...]] = (TokenScope.FULL,)

    organization: Organization
    actor: Actor

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override get_queryset; override narrow_queryset")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.organization = self._resolve_organization(request, kwargs.get("org_slug", ""))
        self._check_role(request)

    def _resolve_organization(self, request: Request, slug: str) -> Organization:
        org = Organization.objects.by_slug(slug)
        if org is None:
            raise exceptions.NotFound()
        token = request.auth if isinstance(request.auth, ApiToken) else None
        try:
            self.actor = actor_for_user(org, request.user, token=token, ip_address=client_ip(request))
        except NotAMember:
            raise exceptions.NotFound() from None
        return org

    def _check_role(self, request: Request) -> None:
        safe = request.method in SAFE_METHODS
        scopes = self.read_scopes if safe else self.write_scopes
        if self.actor.scope not in scopes:
            raise exceptions.PermissionDenied("This token's scope does not allow this; it may only manage keys.")
        role = self.action_roles.get(self.action or "", self.read_role if safe else self.write_role)
        if not self.actor.at_least(role):
            raise exceptions.PermissionDenied(f"This needs the '{role}' role in the organization or higher.")

    def get_queryset(self) -> QuerySet[Any]:
        base = cast("QuerySet[Any]", self.queryset)  # type: ignore[arg-type]  # the stubs take it for a Manager
        model: type[Model] = base.model
        if getattr(self, "swagger_fake_view", False):
            return model._default_manager.none()
        qs = base.all().filter(**{self.org_field: self.organization})
        return self.narrow_queryset(qs)

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "actor"):
            context["actor"] = self.actor
            context["organization"] = self.organization
        return context
