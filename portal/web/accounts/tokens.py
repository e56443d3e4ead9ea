"""API tokens page (`/orgs/{org}/tokens/`): everyone lists and manages their own tokens, admins
see and revoke everyone's (the rule of `ApiToken.objects.visible_to`, as in the API). The
plaintext is shown once, on the answer to the create, and never stored."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from portal import services
from portal.api.errors import validation_detail
from portal.api.serializers import ApiTokenSerializer
from portal.models import ROLE_RANK, ApiToken, OrgRole, TokenScope
from portal.tenancy import Parent
from portal.web.base import OrgPage


def _form_data(post: Any) -> dict[str, Any]:
    data = {"name": post.get("name", ""), "role": post.get("role", ""), "scope": post.get("scope", TokenScope.FULL)}
    if post.get("expires_at"):
        data["expires_at"] = post["expires_at"]
    return data


class TokensPage(OrgPage):
    """The tokens the actor sees, and the form that creates one for the actor."""

    write_role = OrgRole.VIEWER  # everyone may hold tokens; the service caps the token's role at the actor's

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        serializer = ApiTokenSerializer(data=_form_data(request.POST), context={"organization": self.organization})
        if not serializer.is_valid():
            return self.listing(errors=serializer.errors)
        try:
            token, plaintext = services.api_token_create(actor=self.actor, **serializer.validated_data)
        except ValidationError as exc:
            return self.listing(errors=validation_detail(exc))
        response = self.page("web/accounts/token_created.html", token=token, plaintext=plaintext)
        response["Cache-Control"] = "no-store"
        return response

    def listing(self, *, errors: Any) -> HttpResponse:
        tokens = ApiToken.objects.visible_to(self.actor, "view").select_related("user").order_by("-created_at")
        own_rank = ROLE_RANK[OrgRole(self.actor.role)]
        roles = [(v, label) for v, label in OrgRole.choices if ROLE_RANK[OrgRole(v)] <= own_rank]
        return self.page("web/accounts/tokens.html", http_status=400 if errors else 200, tokens=tokens[:500],
                         errors=errors, form=self.request.POST if errors else {}, roles=roles,
                         scopes=TokenScope.choices, now=timezone.now())


class TokenRevoke(OrgPage):
    """POST: revoke one token (one's own; admins: anyone's), then back to the list."""

    write_role = OrgRole.VIEWER
    parents = (Parent(ApiToken, "token_id", action="change", select_related=("user",)),)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        token = self.parent(ApiToken)
        services.api_token_revoke(actor=self.actor, token=token)
        messages.success(request, f"The token '{token.name}' ({token.prefix}...) is revoked: it no longer works.")
        return redirect("web:tokens", org_slug=self.organization.slug)
