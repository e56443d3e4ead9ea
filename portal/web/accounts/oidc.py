"""Single sign-on through OpenID Connect, with mozilla-django-oidc (authorization code flow with PKCE,
the ID token's signature checked against the provider's JWKS).

Only an e-mail address the provider says it verified (`email_verified`) signs in: accounts are
matched by e-mail, and an unverified address would let anyone who can register it at the
provider take over the portal account of that address (or an invitation sent to it). At each
sign-in the organization map (`OIDC_ORG_MAP`) is applied: `portal.accounts.sso_apply_mapping`."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from portal import accounts

log = logging.getLogger(__name__)


class PortalOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend: users by verified e-mail; the organization map at each sign-in."""

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if not isinstance(claims.get("email"), str) or not accounts.email_verified(claims):
            log.warning("SSO sign-in refused: no e-mail address, or the provider did not verify it")
            return False
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(email__iexact=claims["email"].strip())

    def create_user(self, claims: dict[str, Any]) -> Any:
        try:
            return accounts.sso_user(claims)
        except (PermissionDenied, ValidationError) as exc:
            raise SuspiciousOperation(f"SSO sign-in refused: {exc}") from None

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        user = super().get_or_create_user(access_token, id_token, payload)
        if user is not None and user.is_active:
            accounts.sso_apply_mapping(user=user, claims=self._claims)
        return user

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        claims = super().get_userinfo(access_token, id_token, payload)
        self._claims: dict[str, Any] = claims if isinstance(claims, dict) else {}
        return self._claims


def _configured() -> None:
    if not import_from_settings("OIDC_ENABLED", False):
        raise Http404


def sso_start(request: HttpRequest) -> HttpResponse:
    """Redirects to the identity provider (404 when SSO is not configured)."""
    _configured()
    return OIDCAuthenticationRequestView.as_view()(request)


def sso_callback(request: HttpRequest) -> HttpResponse:
    """The provider's answer. Any failure (refused, provider unreachable, forged state) goes back
    to the sign-in page with a message, never a traceback."""
    _configured()
    try:
        return OIDCAuthenticationCallbackView.as_view()(request)
    except (SuspiciousOperation, requests.RequestException, ValueError) as exc:
        log.warning("SSO callback failed: %s", type(exc).__name__)
        return HttpResponseRedirect(import_from_settings("LOGIN_REDIRECT_URL_FAILURE", "/login/?sso=failed"))
