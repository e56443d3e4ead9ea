"""The web UI's URLs: each area's package has its own `urls.py` (all in the `web:` namespace)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.web import views
from portal.web.accounts import views as accounts_views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", accounts_views.SignIn.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("portal.web.accounts.urls")),
    path("", include("portal.web.dashboards.urls")),
    path("", include("portal.web.gateway.urls")),
    path("", include("portal.web.org.urls")),
    path("", include("portal.web.evaluations.urls")),
]
