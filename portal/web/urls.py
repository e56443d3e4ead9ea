from django.contrib.auth import views as auth_views
from django.urls import path

from portal.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("orgs/<str:org_slug>/", views.OrgOverview.as_view(), name="org"),
    path("orgs/<str:org_slug>/keys/", views.KeysPage.as_view(), name="keys"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/<str:verb>/", views.KeyAction.as_view(), name="key-action"),
    path("orgs/<str:org_slug>/routes/", views.RoutesPage.as_view(), name="routes"),
    path("orgs/<str:org_slug>/audit/", views.AuditPage.as_view(), name="audit"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/", views.ProjectPage.as_view(), name="project"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/runs/<int:run_id>/", views.RunPage.as_view(), name="run"),
]
