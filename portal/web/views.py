"""The web UI for organization members. Every page under `/orgs/{org_slug}/` is an
`OrgPage` (portal/web/base.py): the same tenancy rules as the API, from the same
mixin; tenant rows are read only through `visible_to`, and every write goes
through the same serializers (for validation) and services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from portal.models import Membership


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "web/error.html", {"title": "Not found", "message": "There is nothing here."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return render(request, "web/error.html", {"title": "Something went wrong",
                                              "message": "The error was logged."}, status=500)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user  # login_required: never anonymous here
    membership = (Membership.objects.filter(user_id=user.pk or 0).select_related("organization")
                  .order_by("id").first())
    if membership is None:
        return render(request, "web/error.html", {"title": "No organization",
                                                  "message": "You are not a member of any organization yet."})
    return redirect("web:org", org_slug=membership.organization.slug)
