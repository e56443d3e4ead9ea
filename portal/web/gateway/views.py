"""The keys pages: the list and the form that issues a key, a key's own page (its usage, rotate with a chosen
grace period, block, unblock, revoke), the key shown once with its Cline setup, and the Cline CLI's
`providers.json` as a download. Credentials and routes are in `credentials.py` and `routes.py`."""

from __future__ import annotations

import datetime as dt
import hmac
import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from gateway import selectors
from gateway.api.serializers import KeySerializer, KeyUpdateSerializer, RotateSerializer
from gateway.cline import cline_setup
from gateway.models import KeyKind, ModelRoute, VirtualKey
from gateway.services import keys as key_services
from gateway.services.keys import IssuedKey
from portal.access import Actor
from portal.api.errors import validation_detail
from portal.exceptions import Conflict
from portal.models import OrgRole, Project, Team
from portal.tenancy import Parent
from portal.tokens import sha256_hex
from portal.web import charts
from portal.web.base import OrgPage
from portal.web.gateway import cline as cline_text
from portal.web.gateway.forms import BUDGET_PERIODS, changed_key_fields, first_errors, key_form_data, key_initial

KEY = Parent(VirtualKey, "key_id", select_related=("team", "project", "owner"))
# The rotation form's choices (seconds, label); those above KEY_ROTATION_MAX_GRACE_SECONDS are not offered.
GRACE_CHOICES = ((0, "none: the old key stops at once"), (300, "5 minutes"), (3600, "1 hour"), (86400, "1 day"),
                 (7 * 86400, "7 days"), (30 * 86400, "30 days"))
USAGE_RANGES = (7, 30, 90)


def issuable_teams(actor: Actor) -> QuerySet[Team]:
    """The teams the form offers: every team to org admins, one's own teams to the others."""
    teams = Team.objects.visible_to(actor, "view")
    return teams if actor.at_least(OrgRole.ADMIN) else teams.filter(pk__in=list(actor.team_roles()))


def may(actor: Actor, key: VirtualKey, *, admin_only: bool = False) -> bool:
    """Whether the services would let the actor change this key (the buttons a page shows)."""
    try:
        key_services.check_may_write(actor, team_id=key.team_id, owner_id=key.owner_id, admin_only=admin_only)
    except PermissionDenied:
        return False
    return True


class KeysPage(OrgPage):
    """The keys the actor sees, and the form that issues one."""

    write_role = OrgRole.MEMBER  # then the team checks in the service decide, as in the API

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        projects = self.issuable_projects()
        serializer = KeySerializer(data=key_form_data(request.POST, projects),
                                   context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            return self.listing(errors=first_errors(serializer.errors))
        try:
            issued = key_services.key_create(actor=self.actor, data=serializer.validated_data)
        except ValidationError as exc:
            return self.listing(errors=first_errors(validation_detail(exc)))
        return issued_page(self, issued, action="issued")

    def issuable_projects(self) -> QuerySet[Project]:
        return (Project.objects.visible_to(self.actor, "view").filter(team__in=issuable_teams(self.actor))
                .select_related("team").order_by("team__name", "name"))

    def listing(self, *, errors: dict[str, Any]) -> HttpResponse:
        actor, query = self.actor, self.request.GET
        keys = VirtualKey.objects.visible_to(actor, "view")
        status, search = query.get("status", ""), query.get("q", "").strip()[:100].replace("\x00", "")
        if status in ("active", "blocked", "revoked"):
            keys = keys.filter(status=status)
        if search:
            keys = keys.filter(Q(name__icontains=search) | Q(key_prefix__startswith=search))
        page = Paginator(keys.select_related("team", "project", "owner").prefetch_related("allowed_routes"),
                         50).get_page(query.get("page"))
        projects = list(self.issuable_projects())
        routes = ModelRoute.objects.visible_to(actor, "view").filter(is_active=True)
        form: Any = self.request.POST if errors else {}
        return self.page(
            "web/gateway/keys.html", http_status=400 if errors else 200,
            page=page, status=status, search=search, errors=errors, form=form, projects=projects,
            chosen_routes=set(form.getlist("allowed_routes")) if errors else set(),
            may_issue=actor.at_least(OrgRole.MEMBER) and bool(projects), routes=routes,
            budget_periods=BUDGET_PERIODS,
        )


def issued_page(view: OrgPage, issued: IssuedKey, **context: Any) -> HttpResponse:
    """The key's plaintext, shown once, with the Cline setup (never cached: it holds the secret)."""
    cline = issued.cline
    response = view.page(
        "web/gateway/key_issued.html", key=issued.key, plaintext=issued.plaintext, cline=cline,
        providers_json=json.dumps(cline["cli_providers_json"], indent=2),
        cline_auth=cline_text.auth_command(api_key=issued.plaintext, model=cline["model"], base_url=cline["base_url"]),
        **context)
    response["Cache-Control"] = "no-store"
    return response


class KeyPage(OrgPage):
    """One key: what it may do, its usage per day, and the actions the actor may take on it."""

    parents = (KEY,)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.render(errors={})

    def render(self, *, errors: dict[str, list[str]]) -> HttpResponse:
        key, actor, query = self.parent(VirtualKey), self.actor, self.request.GET
        days = int(query["days"]) if query.get("days") in {str(d) for d in USAGE_RANGES} else 30
        end = timezone.now().date()
        rows = selectors.key_usage(actor, key, start=end - dt.timedelta(days=days - 1), end=end)
        changeable = key.status != "revoked" and may(actor, key)
        routes = list(key.allowed_routes.all())
        form: Any = self.request.POST if errors else key_initial(key, routes)
        chosen = set(form.getlist("allowed_routes")) if errors else {r.name for r in routes}
        return self.page(
            "web/gateway/key.html", http_status=400 if errors else 200, key=key, days=days, ranges=USAGE_RANGES,
            rows=rows, used=[r for r in reversed(rows) if r["requests"]],
            totals={"requests": sum(r["requests"] for r in rows), "errors": sum(r["errors"] for r in rows),
                    "cost": sum(float(r["cost"]) for r in rows)},
            cost_chart=charts.bar_chart([(str(r["day"]), float(r["cost"])) for r in rows], unit="$",
                                        title=f"Spend per day, last {days} days"),
            requests_chart=charts.bar_chart([(str(r["day"]), r["requests"]) for r in rows],
                                            title=f"Requests per day, last {days} days", color="#067647"),
            routes=routes, service=key.kind == KeyKind.SERVICE, errors=errors, form=form, chosen_routes=chosen,
            usable_routes=key_services.usable_routes(key.team_id, key.organization_id),
            budget_periods=BUDGET_PERIODS, manager=actor.manages_team(key.team_id),
            may_change=changeable, may_block=changeable and may(actor, key, admin_only=True),
            grace_choices=[c for c in GRACE_CHOICES if c[0] <= settings.KEY_ROTATION_MAX_GRACE_SECONDS],
        )


class KeyEdit(KeyPage):
    """POST: the key's name and limits, through the update serializer and `key_update` (a member may only
    lower the limits of its own key; the service says so), then back to the key's page. Only the fields
    the form changed are sent, so an untouched field is never rewritten (an expiry keeps its seconds)."""

    write_role = OrgRole.MEMBER
    parents = (Parent(VirtualKey, "key_id", action="change", select_related=("team", "project", "owner")),)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        key = self.parent(VirtualKey)
        data = changed_key_fields(request.POST, key_initial(key, list(key.allowed_routes.all())))
        serializer = KeyUpdateSerializer(key, data=data, partial=True,
                                         context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            return self.render(errors=first_errors(serializer.errors))
        try:
            key_services.key_update(actor=self.actor, key=key, data=serializer.validated_data)
        except ValidationError as exc:
            return self.render(errors=first_errors(validation_detail(exc)))
        except (PermissionDenied, Conflict) as exc:
            return self.render(errors={"non_field_errors": [str(exc)]})
        messages.success(request, f"Key '{serializer.validated_data.get('name', key.name)}' saved."
                         if data else "Nothing changed.")
        return redirect("web:key", org_slug=self.organization.slug, key_id=key.pk)


class KeyAction(OrgPage):
    """Rotate, revoke, block or unblock one key (POST). A rotation shows the new key once; the
    others go back to the key's page with a message."""

    write_role = OrgRole.MEMBER  # then the owner and team checks in the services decide
    parents = (Parent(VirtualKey, "key_id", action="change"),)

    def post(self, request: HttpRequest, *, verb: str, **kwargs: Any) -> HttpResponse:
        key = self.parent(VirtualKey)
        try:
            if verb == "rotate":
                return self.rotate(key)
            change = {"revoke": key_services.key_revoke, "block": key_services.key_block,
                      "unblock": key_services.key_unblock}.get(verb)
            if change is None:
                raise Http404
            change(actor=self.actor, key=key)
            messages.success(request, f"Key '{key.name}': {verb} done.")
        except Conflict as exc:
            messages.error(request, str(exc))
        except ValidationError as exc:
            messages.error(request, "; ".join(m for ms in validation_detail(exc).values() for m in ms))
        return redirect("web:key", org_slug=self.organization.slug, key_id=key.pk)

    def rotate(self, key: VirtualKey) -> HttpResponse:
        if key.kind == KeyKind.SERVICE:
            raise Conflict("This is the portal's own key for evaluations; it is rotated by the portal, not by hand.")
        form = RotateSerializer(data={"grace_period_seconds": self.request.POST.get("grace_period_seconds", "0")})
        if not form.is_valid():
            raise ValidationError({"grace_period_seconds": form.errors["grace_period_seconds"]})
        grace = form.validated_data["grace_period_seconds"]
        issued = key_services.key_rotate(actor=self.actor, key=key, grace_period_seconds=grace)
        return issued_page(self, issued, action="rotated", grace=grace)


class ProvidersJson(OrgPage):
    """The Cline CLI's `providers.json` for a key, as a file download. The portal keeps only the key's
    hash, so the page that shows the key once posts it back here; the file is made only for the key's
    current secret (its hash must match), never stored, never cached."""

    action_roles = {"post": OrgRole.VIEWER}  # it changes nothing: whoever holds the key and sees it
    parents = (KEY,)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        key, plaintext = self.parent(VirtualKey), request.POST.get("key", "")
        if not isinstance(plaintext, str) or len(plaintext) > 200 or \
                not hmac.compare_digest(sha256_hex(plaintext), key.key_hash):
            return self.page("web/error.html", http_status=400, title="Not this key",
                             message="This is not the current secret of the key; copy the key again, or rotate it.")
        model = request.POST.get("model", "")
        usable = {r.name for r in key_services.usable_routes(key.team_id, key.organization_id)}
        allowed = {r.name for r in key.allowed_routes.all()} or usable
        setup = cline_setup(api_key=plaintext, model=model if model in allowed else key_services.default_model(key))
        response = HttpResponse(json.dumps(setup["cli_providers_json"], indent=2) + "\n",
                                content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="providers.json"'
        response["Cache-Control"] = "no-store"
        return response
