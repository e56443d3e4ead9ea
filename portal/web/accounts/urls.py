"""Accounts: invitations, password set and reset, single sign-on (OIDC), organization switching."""
from django.urls import URLPattern, URLResolver, path

from portal.web.accounts import oidc, tokens, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("invitations/accept/", views.InvitationAccept.as_view(), name="invitation_accept_form"),
    path("invitations/<str:token>/", views.InvitationAccept.as_view(), name="invitation_accept"),
    path("password/reset/", views.PasswordReset.as_view(), name="password_reset"),
    path("password/reset/sent/", views.PasswordResetDone.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetConfirm.as_view(), name="password_reset_confirm"),
    path("sso/start/", oidc.sso_start, name="oidc_authentication_init"),
    path("sso/callback/", oidc.sso_callback, name="oidc_authentication_callback"),
    path("switch/", views.switch_organization, name="switch_org"),
    path("orgs/<str:org_slug>/tokens/", tokens.TokensPage.as_view(), name="tokens"),
    path("orgs/<str:org_slug>/tokens/<int:token_id>/revoke/", tokens.TokenRevoke.as_view(), name="token_revoke"),
    path("password/reset/done/", views.PasswordResetComplete.as_view(), name="password_reset_complete"),
]
