"""Accounts: invitations, password set and reset, single sign-on (OIDC), organization switching."""
from django.urls import URLPattern, URLResolver, path

from portal.web.accounts import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("invitations/accept/", views.InvitationAccept.as_view(), name="invitation_accept_form"),
    path("invitations/<str:token>/", views.InvitationAccept.as_view(), name="invitation_accept"),
]
