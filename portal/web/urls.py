from django.contrib.auth import views as auth_views
from django.urls import path

from portal.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("orgs/<str:org_slug>/", views.org_overview, name="org"),
    path("orgs/<str:org_slug>/keys/", views.keys_page, name="keys"),
    path("orgs/<str:org_slug>/keys/<int:key_id>/<str:verb>/", views.key_action, name="key-action"),
    path("orgs/<str:org_slug>/routes/", views.routes_page, name="routes"),
    path("orgs/<str:org_slug>/audit/", views.audit_page, name="audit"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/", views.project_page, name="project"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/runs/<int:run_id>/", views.run_page, name="run"),
]
