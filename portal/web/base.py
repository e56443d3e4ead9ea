"""`OrgPage`: the base of every page under `/orgs/{org_slug}/`.

The same `TenantViewMixin` as the API's `OrgScopedViewSet`: the organization
comes from the URL, non-members get 404, a too-low role gets 403 (here the
"Not allowed" page), the URL's objects (`parents`) are loaded through
`visible_to`. Pages query tenant rows only through `visible_to`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.views import View

from portal.models import Organization, Project
from portal.tenancy import Parent, TenantViewMixin

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class OrgPage(TenantViewMixin, View):
    """Subclasses declare roles and parents as the API's viewsets do, and write `get` / `post`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "dispatch" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override dispatch; write get / post")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            return self.http_method_not_allowed(request, *args, **kwargs)
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            self.enter_tenant(request, kwargs, safe=request.method in SAFE_METHODS, action=method)
            return super().dispatch(request, *args, **kwargs)
        except PermissionDenied as exc:  # a member with too low a role: the page keeps its navigation
            actor = getattr(self, "actor", None)
            org = getattr(self, "organization", None) if actor is not None else None
            return render(request, "web/error.html", {"title": "Not allowed", "message": str(exc), "actor": actor,
                                                      "org": org, "orgs": organizations_of(request.user) if org else []},
                          status=403)

    def page(self, template: str, *, http_status: int = 200, **context: Any) -> HttpResponse:
        """The template with the actor, the organization and the user's organizations (the switcher)."""
        return render(self.request, template, {"actor": self.actor, "org": self.organization,
                                                "orgs": organizations_of(self.actor.user), **context}, status=http_status)


def organizations_of(user: Any) -> Any:
    """The user's organizations, for the switcher. Not `visible_to`: it spans the user's tenants by
    design, and shows only the organizations the user is a member of."""
    return Organization.objects.filter(memberships__user=user).order_by("slug")


# The project named by the URL: the parent of every page under /orgs/{org}/projects/{project_id}/.
PROJECT = Parent(Project, "project_id")
