from django.urls import path

from portal.web.dashboards import views

urlpatterns = [
    path("orgs/<str:org_slug>/", views.OrgOverview.as_view(), name="org"),
    path("orgs/<str:org_slug>/projects/<int:project_id>/", views.ProjectPage.as_view(), name="project"),
]
