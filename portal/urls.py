from django.contrib import admin
from django.urls import include, path

from portal import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include(("portal.api.urls", "api"), namespace="api")),
    path("admin/", admin.site.urls),
    path("", include(("portal.web.urls", "web"), namespace="web")),
]

handler404 = "portal.web.views.not_found"
handler500 = "portal.web.views.server_error"
