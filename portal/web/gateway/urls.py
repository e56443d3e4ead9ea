"""The gateway's resources: keys (issue, rotate, revoke, block, the Cline setup, usage), provider credentials,
routes (and their test call)."""
from django.urls import path

from portal.web.gateway import credentials, routes, views

urlpatterns = [
    path("orgs/<str:org_slug>/keys/", views.KeysPage.as_view(), name="keys"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/", views.KeyPage.as_view(), name="key"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/providers.json", views.ProvidersJson.as_view(),
         name="key-providers-json"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/edit/", views.KeyEdit.as_view(), name="key-edit"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/<str:verb>/", views.KeyAction.as_view(), name="key-action"),
    path("orgs/<str:org_slug>/credentials/", credentials.CredentialsPage.as_view(), name="credentials"),
    path("orgs/<str:org_slug>/credentials/new/<str:provider>/", credentials.CredentialForm.as_view(),
         name="credential-new"),
    path("orgs/<str:org_slug>/credentials/<int:credential_id>/", credentials.CredentialEdit.as_view(),
         name="credential"),
    path("orgs/<str:org_slug>/credentials/<int:credential_id>/delete/", credentials.CredentialDelete.as_view(),
         name="credential-delete"),
    path("orgs/<str:org_slug>/routes/", routes.RoutesPage.as_view(), name="routes"),
    path("orgs/<str:org_slug>/routes/new/", routes.RouteForm.as_view(), name="route-new"),
    path("orgs/<str:org_slug>/routes/<int:route_id>/", routes.RouteEdit.as_view(), name="route"),
    path("orgs/<str:org_slug>/routes/<int:route_id>/test/", routes.RouteTest.as_view(), name="route-test"),
    path("orgs/<str:org_slug>/routes/<int:route_id>/delete/", routes.RouteDelete.as_view(), name="route-delete"),
]
