"""The one place where the tenant of an API request is resolved and every queryset is scoped.

Every view under `/api/v1/orgs/{org_slug}/` derives from `OrgScopedViewSet`.
Through `portal.tenancy.TenantViewMixin` (shared with the web UI) it resolves
the organization from the URL, answers 404 to anyone who is not a member,
checks the role the action needs (403) and loads the URL's `parents` (404 for
another tenant's). Its queryset is `queryset.visible_to(actor, action)`,
filtered by the parents, and `get_object` reads from it; subclasses narrow the
queryset with `narrow_queryset` and say `singleton = True` for a resource with
no id in the URL. They cannot override `get_queryset` or `get_object`, and
their `queryset` must be of a tenant model, so a new view cannot forget the
tenant."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.db.models import Model, QuerySet
from django.shortcuts import get_object_or_404
from rest_framework import viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from portal.models import ApiToken
from portal.scoping import Action, TenantQuerySet
from portal.tenancy import TenantViewMixin

LOCKED = ("get_queryset", "get_object")


def row_action(method: str | None) -> Action:
    """What a request does to the rows it reads: a GET views them, a DELETE deletes, the rest change."""
    if method in SAFE_METHODS:
        return "view"
    return "delete" if method == "DELETE" else "change"


class OrgScopedViewSet(TenantViewMixin, viewsets.GenericViewSet):
    #: one object per organization (or per parent): no id in the URL, `get_object` answers it or 404
    singleton: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in LOCKED:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} must not override {name}; override narrow_queryset "
                                "(or declare parents / singleton)")
        queryset = cls.__dict__.get("queryset")
        if queryset is not None and not isinstance(queryset, TenantQuerySet):
            raise TypeError(f"{cls.__name__}.queryset is not of a tenant model (its manager is no TenantManager)")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        token = request.auth if isinstance(request.auth, ApiToken) else None
        self.enter_tenant(request, kwargs, safe=request.method in SAFE_METHODS, action=self.action, token=token)

    def get_queryset(self) -> QuerySet[Any]:
        base = cast("TenantQuerySet[Any]", self.queryset)  # type: ignore[arg-type]  # the stubs take it for a Manager
        model: type[Model] = base.model
        if getattr(self, "swagger_fake_view", False):
            return model._default_manager.none()
        queryset = base.all().visible_to(self.actor, row_action(self.request.method))
        for parent in self.parents:
            if parent.rows is not None:
                queryset = queryset.filter(**{parent.rows: self.parent(parent.model)})
        return self.narrow_queryset(queryset)

    def get_object(self) -> Any:
        if not self.singleton:
            return super().get_object()
        obj = get_object_or_404(self.get_queryset())
        self.check_object_permissions(self.request, obj)
        return obj

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset

    def get_serializer_context(self) -> dict[str, Any]:
        return dict(super().get_serializer_context()) | self.parent_context()
