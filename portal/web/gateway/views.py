"""The gateway's resources: keys (issue, rotate, revoke, block, the Cline setup), provider credentials, routes."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from gateway.api.serializers import KeySerializer
from gateway.models import ModelRoute, VirtualKey
from gateway.services import keys as key_services
from gateway.services.keys import IssuedKey
from portal.access import Actor
from portal.api.errors import validation_detail
from portal.exceptions import Conflict
from portal.models import OrgRole, Project, Team
from portal.tenancy import Parent
from portal.web.base import OrgPage


def _key_form_data(post: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": post.get("name", ""), "team": post.get("team") or None,
                            "project": post.get("project") or None,
                            "allowed_routes": post.getlist("allowed_routes"),
                            "budget_period": post.get("budget_period") or "none"}
    for field in ("max_budget", "soft_budget", "rpm_limit", "tpm_limit", "expires_at"):
        if post.get(field):
            data[field] = post[field]
    return data


def issuable_teams(actor: Actor) -> QuerySet[Team]:
    """The teams the form offers: every team to org admins, one's own teams to the others."""
    teams = Team.objects.visible_to(actor, "view")
    return teams if actor.at_least(OrgRole.ADMIN) else teams.filter(pk__in=list(actor.team_roles()))


class KeysPage(OrgPage):
    """The keys the actor sees, and the form that issues one."""

    write_role = OrgRole.MEMBER  # then the team checks in the service decide, as in the API

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        serializer = KeySerializer(data=_key_form_data(request.POST),
                                   context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            return self.listing(errors=serializer.errors)
        try:
            issued = key_services.key_create(actor=self.actor, data=serializer.validated_data)
        except ValidationError as exc:
            return self.listing(errors=validation_detail(exc))
        return issued_page(self, issued, action="issued")

    def listing(self, *, errors: Any) -> HttpResponse:
        actor, query = self.actor, self.request.GET
        keys = VirtualKey.objects.visible_to(actor, "view")
        status = query.get("status", "")
        if status in ("active", "blocked", "revoked"):
            keys = keys.filter(status=status)
        page = Paginator(keys.select_related("team", "project", "owner").prefetch_related("allowed_routes"),
                         50).get_page(query.get("page"))
        teams = issuable_teams(actor)
        return self.page(
            "web/keys.html", http_status=400 if errors else 200,
            page=page, status=status, errors=errors, form=self.request.POST if errors else {}, teams=teams,
            projects=Project.objects.visible_to(actor, "view").filter(team__in=teams).select_related("team"),
            routes=ModelRoute.objects.visible_to(actor, "view").filter(is_active=True),
        )


def issued_page(view: OrgPage, issued: IssuedKey, **context: Any) -> HttpResponse:
    """The key's plaintext, shown once, with the Cline setup."""
    return view.page("web/key_issued.html", key=issued.key, plaintext=issued.plaintext, cline=issued.cline,
                     providers_json=json.dumps(issued.cline["cli_providers_json"], indent=2), **context)


class KeyAction(OrgPage):
    """Rotate, revoke, block or unblock one key (POST), then back to the keys."""

    write_role = OrgRole.MEMBER  # then the owner and team checks in the services decide
    parents = (Parent(VirtualKey, "key_id", action="change"),)

    def post(self, request: HttpRequest, *, verb: str, **kwargs: Any) -> HttpResponse:
        key = self.parent(VirtualKey)
        try:
            if verb == "rotate":
                grace = int(request.POST.get("grace_period_seconds") or 0)
                issued = key_services.key_rotate(actor=self.actor, key=key, grace_period_seconds=grace)
                return issued_page(self, issued, action="rotated", grace=grace)
            change = {"revoke": key_services.key_revoke, "block": key_services.key_block,
                      "unblock": key_services.key_unblock}.get(verb)
            if change is None:
                raise Http404
            change(actor=self.actor, key=key)
            messages.success(request, f"Key '{key.name}': {verb} done.")
        except (Conflict, ValueError) as exc:
            messages.error(request, str(exc) or "Invalid value.")
        except ValidationError as exc:
            messages.error(request, "; ".join(m for ms in validation_detail(exc).values() for m in ms))
        return redirect("web:keys", org_slug=self.organization.slug)


class RoutesPage(OrgPage):
    """The organization's routes, their deployments and fallbacks."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        routes = ModelRoute.objects.visible_to(self.actor, "view").prefetch_related(
            "deployments__credential", "fallback_links__fallback", "allowed_teams")
        return self.page("web/routes.html", routes=routes)
