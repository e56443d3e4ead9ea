from django.urls import path

from portal.web.gateway import views

urlpatterns = [
    path("orgs/<str:org_slug>/keys/", views.KeysPage.as_view(), name="keys"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/<str:verb>/", views.KeyAction.as_view(), name="key-action"),
    path("orgs/<str:org_slug>/routes/", views.RoutesPage.as_view(), name="routes"),
]
