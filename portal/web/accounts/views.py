"""Accounts pages: sign-in, accepting an invitation (choose a password), password reset, and the
organization switch.

The invitation link carries its token in the path once: the page puts it in the
session and redirects to a URL without it (as Django's password reset does), so
that the token does not linger in the address bar, the history or a Referer."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse, reverse_lazy
from django.views import View

from portal import accounts, throttle
from portal.api.errors import validation_detail
from portal.models import SLUG_VALIDATOR
from portal.web.base import organizations_of

SESSION_KEY = "invitation_token"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _invalid(request: HttpRequest) -> HttpResponse:
    return render(request, "web/error.html", {"title": "Invitation not valid", "message": accounts.LINK_INVALID},
                  status=404)


class InvitationAccept(View):
    """GET /invitations/<token>/ keeps the token and redirects; /invitations/accept/ shows and takes the form."""

    def get(self, request: HttpRequest, token: str | None = None) -> HttpResponse:
        if token is not None:
            request.session[SESSION_KEY] = token
            return redirect("web:invitation_accept_form")
        invitation = accounts.invitation_by_token(request.session.get(SESSION_KEY, ""))
        if invitation is None:
            return _invalid(request)
        return self.form(invitation, errors={})

    def post(self, request: HttpRequest, token: str | None = None) -> HttpResponse:
        plaintext = request.session.get(SESSION_KEY, "")
        invitation = accounts.invitation_by_token(plaintext)
        if invitation is None:
            return _invalid(request)
        password, again = request.POST.get("password1", ""), request.POST.get("password2", "")
        has_password = invitation.user.has_usable_password()
        if not has_password and password != again:
            return self.form(invitation, errors={"password2": ["The two passwords differ."]})
        try:
            invitation = accounts.invitation_accept(plaintext=plaintext, password=None if has_password else password)
        except ValidationError as exc:
            return self.form(invitation, errors=validation_detail(exc))
        except PermissionDenied:
            return _invalid(request)
        request.session.pop(SESSION_KEY, None)
        if has_password:
            messages.success(request, f"You joined {invitation.organization.name}. Sign in as usual.")
            return redirect("web:login")
        login(request, invitation.user, backend=MODEL_BACKEND)
        messages.success(request, f"Welcome to {invitation.organization.name}. Your password is set.")
        return redirect("web:org", org_slug=invitation.organization.slug)

    def form(self, invitation: Any, *, errors: dict[str, Any]) -> HttpResponse:
        return render(self.request, "web/accounts/invitation_accept.html",
                      {"invitation": invitation, "errors": errors,
                       "has_password": invitation.user.has_usable_password()},
                      status=400 if errors else 200)


def sso_configured() -> bool:
    """Single sign-on is offered when an OpenID provider is configured (OIDC_RP_CLIENT_ID and its endpoints)."""
    return bool(getattr(settings, "OIDC_ENABLED", False))


class SignIn(auth_views.LoginView):
    """Django's login with the e-mail as the username, a password-reset link and, when configured,
    "Sign in with SSO"."""

    template_name = "registration/login.html"
    redirect_authenticated_user = False

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        failed = self.request.GET.get("sso") == "failed"
        return super().get_context_data(sso=sso_configured(), sso_failed=failed, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Refused (429) while the account or the address has too many recent failures, before the
        password is even checked: a guess in that time tells nothing."""
        who = (request.POST.get("username") or "")[:254]
        wait = max(throttle.wait_seconds(login_limits()[0], who),
                   throttle.wait_seconds(login_limits()[1], client_address(request)))
        if wait:
            form = self.get_form_class()(request)
            response = self.render_to_response(self.get_context_data(form=form, throttled=-(-wait // 60)))
            response.status_code = 429
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        who = (self.request.POST.get("username") or "")[:254]
        throttle.count(login_limits()[0], who)
        throttle.count(login_limits()[1], client_address(self.request))
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        throttle.forget(login_limits()[0], (self.request.POST.get("username") or "")[:254])
        return super().form_valid(form)


def client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def login_limits() -> tuple[throttle.Limit, throttle.Limit]:
    window = settings.THROTTLE_WINDOW_SECONDS
    return (throttle.Limit("login-account", settings.LOGIN_FAILURES_PER_ACCOUNT, window),
            throttle.Limit("login-address", settings.LOGIN_FAILURES_PER_ADDRESS, window))


def reset_limits() -> tuple[throttle.Limit, throttle.Limit]:
    window = settings.THROTTLE_WINDOW_SECONDS
    return (throttle.Limit("reset-account", settings.PASSWORD_RESETS_PER_ACCOUNT, window),
            throttle.Limit("reset-address", settings.PASSWORD_RESETS_PER_ADDRESS, window))


# Password reset: Django's views; the links in the e-mail are built from PORTAL_PUBLIC_URL (never the Host header).
RESET_TEMPLATES = {"email_template_name": "registration/password_reset_email.txt",
                   "subject_template_name": "registration/password_reset_subject.txt"}


class PasswordReset(auth_views.PasswordResetView):
    template_name = "web/accounts/password_reset_form.html"
    success_url = reverse_lazy("web:password_reset_done")
    email_template_name = RESET_TEMPLATES["email_template_name"]
    subject_template_name = RESET_TEMPLATES["subject_template_name"]

    def form_valid(self, form: Any) -> HttpResponse:
        """Over the limits, no e-mail is sent, but the page says the same as always (whether an
        account exists, or was throttled, is not told)."""
        email, address = form.cleaned_data["email"], client_address(self.request)
        account, per_address = reset_limits()
        if throttle.wait_seconds(account, email) or throttle.wait_seconds(per_address, address):
            return redirect(self.get_success_url())
        throttle.count(account, email)
        throttle.count(per_address, address)
        self.extra_email_context = {"base_url": settings.PORTAL_PUBLIC_URL}
        return super().form_valid(form)


class PasswordResetDone(auth_views.PasswordResetDoneView):
    template_name = "web/accounts/password_reset_done.html"


class PasswordResetConfirm(auth_views.PasswordResetConfirmView):
    template_name = "web/accounts/password_reset_confirm.html"
    success_url = reverse_lazy("web:password_reset_complete")


class PasswordResetComplete(auth_views.PasswordResetCompleteView):
    template_name = "web/accounts/password_reset_complete.html"


# The organization switcher (base.html): to the same section of the chosen organization.
SWITCHABLE_SECTIONS = ("org", "keys", "routes", "credentials", "teams", "members", "projects", "tokens",
                       "settings", "audit")


@login_required
def switch_organization(request: HttpRequest) -> HttpResponse:
    slug = request.GET.get("org", "")
    if not isinstance(slug, str) or not re.fullmatch(SLUG_VALIDATOR.regex, slug):
        raise Http404  # never to the database: a NUL byte there is a DataError (a 500)
    org = organizations_of(request.user).filter(slug=slug).first()
    if org is None:
        raise Http404
    section = request.GET.get("section", "")
    if section in SWITCHABLE_SECTIONS:
        try:
            return redirect(reverse(f"web:{section}", kwargs={"org_slug": org.slug}))
        except NoReverseMatch:
            pass
    return redirect("web:org", org_slug=org.slug)
