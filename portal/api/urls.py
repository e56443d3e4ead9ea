from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from gateway.api.usage import UsageViewSet
from gateway.api.views import CredentialViewSet, KeyViewSet, RouteViewSet
from portal.api import views
from portal.api.routers import Router

ORG = r"orgs/(?P<org_slug>[^/]+)"


router = Router(trailing_slash=True)
router.register(f"{ORG}/members", views.MemberViewSet, basename="member")
router.register(f"{ORG}/teams/(?P<team_id>[0-9]+)/members", views.TeamMemberViewSet, basename="team-member")
router.register(f"{ORG}/teams", views.TeamViewSet, basename="team")
router.register(f"{ORG}/projects", views.ProjectViewSet, basename="project")
router.register(f"{ORG}/credentials", CredentialViewSet, basename="credential")
router.register(f"{ORG}/routes", RouteViewSet, basename="route")
router.register(f"{ORG}/keys", KeyViewSet, basename="key")
router.register(f"{ORG}/tokens", views.ApiTokenViewSet, basename="token")
router.register(f"{ORG}/audit-log", views.AuditLogViewSet, basename="audit-log")
router.register(f"{ORG}/usage", UsageViewSet, basename="usage")

org_detail = views.OrganizationViewSet.as_view({"get": "retrieve", "patch": "partial_update"})

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start script from `docs/?script`: no inline script (the CSP refuses one).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema",
                                                      template_name="web/dashboards/api_docs.html"), name="docs"),
    path("orgs/<str:org_slug>/", org_detail, name="organization-detail"),
    path("", include("evals.api.urls")),
    path("", include(router.urls)),
]
