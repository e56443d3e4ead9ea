"""The tenant of a request, one way for the API and the web UI.

`TenantViewMixin` is what `portal.api.base.OrgScopedViewSet` and
`portal.web.base.OrgPage` share: it resolves the organization named in the
URL and who is acting in it (404 for anyone who is not a member, so an
outsider cannot learn that the organization exists), checks the role and
token scope the request needs (403), and loads the objects the URL names
(`parents`: a nested URL's parent, a page's project) through `visible_to`
(404 for another tenant's or another project's object)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest

from portal.access import Actor, NotAMember, actor_for_user
from portal.models import SLUG_VALIDATOR, ApiToken, Organization, OrgRole, TokenScope
from portal.scoping import Action, TenantQuerySet

_M = TypeVar("_M", bound=Model)


def organization_by_slug(slug: str) -> Organization | None:
    """The organization with this slug, or None (also for strings that cannot be slugs)."""
    if not isinstance(slug, str) or not re.fullmatch(SLUG_VALIDATOR.regex, slug):
        return None
    return Organization.objects.filter(slug=slug).first()


def resolve_actor(request: HttpRequest, org_slug: str, *, token: ApiToken | None = None) -> Actor:
    """Who acts in the organization named in the URL; Http404 for anyone who is not a member."""
    org = organization_by_slug(org_slug)
    if org is None:
        raise Http404
    try:
        return actor_for_user(org, request.user, token=token, ip_address=request.META.get("REMOTE_ADDR") or None)
    except NotAMember:
        raise Http404 from None


@dataclass(frozen=True)
class Parent:
    """An object the URL names above what the view shows (`.../teams/{team_id}/members/`,
    `.../projects/{project_id}/runs/{run_id}/`), loaded through `visible_to` before the view runs."""

    model: type[Model]
    kwarg: str  # the URL keyword that holds its id
    #: the lookup from the viewset's rows to this object (None: the rows are not filtered by it)
    rows: str | None = None
    #: the field of this object that must be the parent declared before it (an item of *this* dataset)
    within: str | None = None
    select_related: tuple[str, ...] = ()
    action: Action = "view"  # the parent of a change is only read; a page whose subject is changed says so


class TenantViewMixin:
    """Resolves the tenant, checks the role, loads the URL's objects. Subclasses declare, never code, these."""

    #: the lowest organization role for reading and for writing
    read_role: ClassVar[str] = OrgRole.VIEWER
    write_role: ClassVar[str] = OrgRole.ADMIN
    #: per-action overrides of the two above (the DRF action, or the web handler's method)
    action_roles: ClassVar[dict[str, str]] = {}
    #: which token scopes may read / write here
    read_scopes: ClassVar[tuple[str, ...]] = (TokenScope.FULL,)
    write_scopes: ClassVar[tuple[str, ...]] = (TokenScope.FULL,)
    #: the objects the URL names, outermost first
    parents: ClassVar[tuple[Parent, ...]] = ()

    organization: Organization
    actor: Actor
    _parent_objects: dict[type[Model], Model]

    def enter_tenant(self, request: HttpRequest, kwargs: dict[str, Any], *, safe: bool, action: str | None,
                     token: ApiToken | None = None) -> None:
        self.actor = resolve_actor(request, kwargs.get("org_slug", ""), token=token)
        self.organization = self.actor.organization
        self.check_role(safe=safe, action=action)
        self._load_parents(kwargs)

    def check_role(self, *, safe: bool, action: str | None) -> None:
        scopes = self.read_scopes if safe else self.write_scopes
        if self.actor.scope not in scopes:
            raise PermissionDenied("This token's scope does not allow this; it may only manage keys.")
        role = self.action_roles.get(action or "", self.read_role if safe else self.write_role)
        if not self.actor.at_least(role):
            raise PermissionDenied(f"This needs the '{role}' role in the organization or higher.")

    def _load_parents(self, kwargs: dict[str, Any]) -> None:
        self._parent_objects = {}
        previous: Model | None = None
        for parent in self.parents:
            rows = cast("TenantQuerySet[Any]", parent.model._default_manager.all()).visible_to(self.actor,
                                                                                             parent.action)
            if parent.within is not None:
                rows = rows.filter(**{parent.within: previous})
            obj = rows.select_related(*parent.select_related).filter(pk=kwargs[parent.kwarg]).first()
            if obj is None:
                raise Http404
            self._parent_objects[parent.model] = previous = obj

    def parent(self, model: type[_M]) -> _M:
        """The object of `model` that the URL names (declared in `parents`)."""
        return cast(_M, self._parent_objects[model])

    def parent_context(self) -> dict[str, Any]:
        """The actor, the organization and the URL's objects, by model name (`project`, `dataset`...)."""
        if not hasattr(self, "actor"):
            return {}  # the schema generator builds views without a request
        loaded = {str(type(obj)._meta.model_name): obj for obj in self._parent_objects.values()}
        return {"actor": self.actor, "organization": self.organization, **loaded}
